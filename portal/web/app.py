"""The app factory: Flask server, Dash pages, optional blueprints of other capabilities.

One app per process (Dash keeps its page registry globally); gunicorn workers each build one,
and a plugin change reloads the workers (see ``portal.web.server``).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import dash
import flask
from dash import set_props

from portal import quicklook as ql
from portal.errors import PortalError
from portal.settings import Settings
from portal.web import dash_compat, errors, loader, metrics, shell

log = logging.getLogger("portal.web")

#: Blueprints registered when their module exists ("module:attr"); each team ships its own.
BLUEPRINTS: tuple[str, ...] = (
    "portal.web.api:blueprint",
    "portal.alerts.webhook:blueprint",
    "portal.logs.api:blueprint",
)
ASSETS = Path(__file__).resolve().parent / "assets"


def _optional(target: str) -> Any | None:
    """``module:attr``, or None when that module is not there yet."""
    module, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise
    return getattr(mod, attr)


def register_blueprints(server: flask.Flask) -> list[str]:
    """Register every available blueprint; a broken one is logged and skipped."""
    done = []
    for target in BLUEPRINTS:
        try:
            bp = _optional(target)
        except Exception:  # noqa: BLE001 - another team's bug must not take the portal down
            log.exception("blueprint %s failed to import; skipped", target)
            continue
        if bp is not None:
            server.register_blueprint(bp)
            done.append(target)
    return done


def create_app(cfg: Settings) -> flask.Flask:
    """The portal's WSGI app: Dash pages (built-in + quicklooks) on a Flask server."""
    dash_compat.reset_globals()  # pages and callbacks of a previous app in this process
    server = flask.Flask("portal")
    metrics.install(server)
    server.config["PORTAL_SETTINGS"] = cfg  # request code reads it via portal.web.context
    errors.install(server)  # JSON error bodies on /api/*
    register_blueprints(server)
    pages: list[loader.Page] = []

    def on_error(err: Exception) -> None:
        """A callback failed: show it on its page, name the file in the log; others go on."""
        if isinstance(err, PortalError):
            set_props("portal-callback-error", {"children": ql.unavailable(err)})
            return None
        file = loader.file_of(err, pages)
        where = file.name if file else "a portal callback"
        metrics.PAGE_ERRORS.labels(file.stem if file else "portal").inc()
        log.error("callback in %s failed", file or "the portal", exc_info=err)
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
    pages.extend(loader.load_all(cfg.quicklooks_path))
    for p in pages:
        metrics.PAGES.labels(p.section, "error" if p.error else "ok").inc()
    app.layout = shell.layout(pages)
    shell.register(app)
    server.config["PORTAL_PAGES"] = pages
    # Dash registers its JS bundle paths only while serving the index page: a worker whose
    # first request is a bundle would answer 500. Serve the index once, in-process, now.
    with server.test_client() as client:
        client.get("/", headers={"X-Portal-Warmup": "1"})
    return server
