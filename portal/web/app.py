"""The app factory: Flask server, Dash pages and every plugin's blueprints.

One app per process (Dash keeps its page registry globally); gunicorn workers each build one,
and a plugin change reloads the workers (see ``portal.web.server``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import dash
import flask
from dash import html, set_props
from flask.json.provider import DefaultJSONProvider

from portal import plugins, routes
from portal import quicklook as ql
from portal.auth import web as auth_web
from portal.auth.ui import user_bar
from portal.db import engine as db_engine
from portal.errors import PortalError
from portal.settings import Settings
from portal.web import dash_compat, errors, loader, metrics, shell, sources

log = logging.getLogger("portal.web")

ASSETS = Path(__file__).resolve().parent / "assets"


def register_blueprints(server: flask.Flask, cfg: Settings) -> list[str]:
    """Mount every plugin's blueprints (``register_blueprints``); a clash is logged and skipped."""
    done = []
    for bp in plugins.get(cfg).results("register_blueprints", settings=cfg):
        try:
            server.register_blueprint(bp)
        except ValueError as exc:  # two blueprints with one name
            log.error("blueprint %s not mounted: %s", bp.name, exc)
            continue
        done.append(bp.name)
    return done


def plugin_errors(cfg: Settings) -> html.Div | None:
    """One card naming every plugin that failed to load, shown above every page."""
    failed = plugins.get(cfg).failed
    if not failed:
        return None
    for info in failed:
        log.error("plugin %s (%s) failed: %s", info.name, info.source, info.error)
    return html.Div(
        [html.H3("Plugins that failed to load (the rest of the portal works)")]
        + [html.P(f"{i.name} ({i.source}): {i.error}") for i in failed],
        className="portal-error-card",
        id="portal-plugin-errors",
        role="alert",
    )


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a body nested too deeply is bad JSON (400), not a RecursionError."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """``host`` (a ``Host`` header) is in ``allowed``; an entry without a port allows any."""
    host = host.strip().lower()
    if "*" in allowed or host in allowed:
        return True
    name = host if host.endswith("]") or ":" not in host else host.rpartition(":")[0]
    return name in allowed


def check_host(server: flask.Flask) -> None:
    """Answer only to the portal's own names: another site's name resolving to 127.0.0.1 (DNS
    rebinding) gets 400, so a page there cannot read the portal through the browser."""

    def check() -> flask.Response | None:
        req = flask.request
        if req.environ.get(auth_web.WARMUP):
            return None
        if host_allowed(req.host, routes.settings().host_allow_list):
            return None
        return routes.error_response(
            400, f"Host {req.host[:100]!r} is not a name of this portal (PORTAL_ALLOWED_HOSTS)"
        )

    server.before_request(check)


def limit_queries(server: flask.Flask) -> None:
    """Every query a request triggers (pages, callbacks, API) has PORTAL_QUERY_TIMEOUT_SECONDS."""

    def start() -> None:
        db_engine.set_time_limit(routes.settings().query_timeout_seconds)

    def end(_exc: BaseException | None) -> None:
        db_engine.set_time_limit(None)

    server.before_request(start)
    server.teardown_request(end)


def create_app(cfg: Settings) -> flask.Flask:
    """The portal's WSGI app: Dash pages (built-in + quicklooks) on a Flask server."""
    dash_compat.reset_globals()  # pages and callbacks of a previous app in this process
    server = flask.Flask("portal")
    metrics.install(server)
    server.config[routes.CONFIG_KEY] = cfg  # request code reads it with routes.settings()
    check_host(server)  # first of all: a request for another site's name goes no further
    limit_queries(server)  # before the access check, which queries the database too
    server.config["MAX_CONTENT_LENGTH"] = cfg.max_request_bytes  # larger bodies: 413
    server.json = JSONProvider(server)
    errors.install(server)  # JSON error bodies on /api/*
    auth_web.install(server, cfg)  # who is asking, and may they
    register_blueprints(server, cfg)
    pages: list[loader.Page] = []

    def on_error(err: Exception) -> None:
        """A callback failed: show it on its page, name the file in the log; others go on."""
        if isinstance(err, PortalError):
            set_props("portal-callback-error", {"children": ql.unavailable(err)})
            return None
        file = loader.file_of(err, pages)
        where = file.name if file else "a portal callback"
        metrics.PAGE_ERRORS.labels(file.stem if file else "portal").inc()
        log.error("callback in %s failed", file or "the portal")  # traceback: error_card
        set_props(
            "portal-callback-error", {"children": ql.error_card(f"{where}: callback failed", err)}
        )
        return None

    app = dash.Dash(
        "portal",
        server=server,  # type: ignore[arg-type]  # Dash accepts a Flask server
        use_pages=True,
        pages_folder="",
        assets_folder=str(ASSETS),
        suppress_callback_exceptions=True,
        on_error=on_error,
        title="obsportal",
        update_title=None,  # type: ignore[arg-type]  # None: keep the title while updating
    )
    pages.extend(loader.load_all(sources.page_files(cfg), sources.quicklook_folders(cfg)))
    for p in pages:
        metrics.PAGES.labels(p.section, "error" if p.error else "ok").inc()
    failed_plugins = plugin_errors(cfg)
    app.layout = lambda: html.Div([failed_plugins, user_bar(), shell.layout(pages)])
    shell.register(app)
    server.config["PORTAL_PAGES"] = pages
    server.extensions["portal_dash"] = app  # access control reads callbacks' declared roles
    # Dash registers its JS bundle paths only while serving the index page: a worker whose
    # first request is a bundle would answer 500. Serve the index once, in-process, now (a
    # WSGI environ key no HTTP client can set lets this one request past the access check).
    with server.test_client() as client:
        client.get("/", environ_overrides={auth_web.WARMUP: True})
    return server
