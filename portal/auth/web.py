"""Access control for every request the portal serves.

Before any route runs: who is asking (bearer token, trusted proxy sign-on, session cookie, or
anonymous), which role the route or Dash callback declares (``requires``), and, for requests
that ride on the session cookie, whether they come from the portal's own pages (Origin check,
so another site cannot make a logged-in browser act). After: security headers on every answer.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import flask
from flask.sessions import SecureCookieSessionInterface
from werkzeug.wrappers import Response as WerkzeugResponse

from portal import routes
from portal.auth import bootstrap, tokens, users
from portal.auth.identity import ANONYMOUS, Identity
from portal.auth.roles import PUBLIC, at_least, declared
from portal.settings import Settings

log = logging.getLogger("portal.auth")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
DASH_DISPATCH = "/_dash-update-component"
SESSION_COOKIE = "obsportal_session"
WARMUP = "portal.warmup"  # environ key of create_app's own first request (not an HTTP header)
HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Refused(Exception):
    """A request that may not go on: ``status`` 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        return bool(flask.has_request_context() and _is_https())


def secret_key(cfg: Settings) -> str:
    """``PORTAL_SECRET_KEY``, else one generated once into the data dir with mode 0600."""
    if cfg.secret_key:
        return cfg.secret_key
    return bootstrap.secret_file(cfg.data_dir / "secret_key", secrets.token_urlsafe(48))


def install(server: flask.Flask, cfg: Settings) -> None:
    """Sessions, the access check before every request, and headers after it."""
    server.secret_key = secret_key(cfg)
    server.session_interface = _SessionInterface()
    server.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=cfg.session_max_hours),
    )
    server.before_request(_check)
    server.after_request(_headers)


# -- where the request comes from ---------------------------------------------------------------
def _trusted(cfg: Settings) -> bool:
    addr = flask.request.remote_addr or ""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in cfg.trusted_proxies)


def _address(cfg: Settings) -> str:
    """The client: the last ``X-Forwarded-For`` entry (the one our trusted proxy appended;
    earlier ones came from the client and prove nothing), only from a trusted proxy."""
    forwarded = flask.request.headers.get("X-Forwarded-For", "")
    if forwarded and _trusted(cfg):
        return forwarded.split(",")[-1].strip()
    return flask.request.remote_addr or ""


def _is_https() -> bool:
    if flask.request.is_secure:
        return True
    cfg = routes.settings()
    proto = flask.request.headers.get("X-Forwarded-Proto", "")
    return proto == "https" and _trusted(cfg)


def _request_id() -> str:
    given = flask.request.headers.get("X-Request-Id", "")
    if given and len(given) <= 64 and given.replace("-", "").isalnum():
        return given
    return uuid.uuid4().hex[:16]


# -- who is asking ------------------------------------------------------------------------------
def _bearer(cfg: Settings, address: str, rid: str) -> Identity | None:
    header = flask.request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise Refused(401, "Authorization must be 'Bearer <token>'")
    token = tokens.verify(cfg.database_url, raw.strip())
    if token is None:
        raise Refused(401, "the API token is unknown, revoked or expired")
    return Identity(token.name, "token", token.role, address, rid)


def _proxy_user(cfg: Settings, address: str, rid: str) -> Identity | None:
    name = flask.request.headers.get("X-Forwarded-User", "")
    if not name or not _trusted(cfg):
        return None  # from an untrusted address the header means nothing
    row = users.get(cfg.database_url, name)
    if row is None or row.disabled:
        raise Refused(403, f"user {name!r} is not registered or is disabled in the portal")
    return Identity(name, "user", row.role, address, rid)


def _session_user(cfg: Settings, address: str, rid: str) -> Identity | None:
    sess = flask.session
    name = sess.get("user")
    if not name:
        return None
    now = time.time()
    idle = now - float(sess.get("seen_at", 0)) > cfg.session_idle_minutes * 60
    too_old = now - float(sess.get("login_at", 0)) > cfg.session_max_hours * 3600
    row = None if idle or too_old else users.get(cfg.database_url, name)
    voided = (
        row is not None
        and row.sessions_after is not None
        and (float(sess.get("login_at", 0)) <= row.sessions_after.timestamp())
    )
    if row is None or row.disabled or voided:
        sess.clear()
        flask.g.portal_session_ended = True
        return None
    if now - float(sess.get("seen_at", 0)) > 30:  # refresh the idle clock, not on every call
        sess["seen_at"] = now
    return Identity(name, "user", row.role, address, rid)


def _identify(cfg: Settings) -> tuple[Identity, bool]:
    """The identity, and whether it rests on the session cookie (then CSRF rules apply)."""
    address, rid = _address(cfg), _request_id()
    for source in (_bearer, _proxy_user):
        found = source(cfg, address, rid)
        if found is not None:
            return found, False
    found = _session_user(cfg, address, rid)
    if found is not None:
        return found, True
    role = "viewer" if cfg.anonymous == "viewer" else None
    return Identity(ANONYMOUS.actor, ANONYMOUS.kind, role, address, rid), False


# -- what the route needs -----------------------------------------------------------------------
def needed_role(server: flask.Flask) -> str | None:
    """The role this request's route (or Dash callback) declares; None: undeclared."""
    req = flask.request
    view = server.view_functions.get(req.endpoint or "")
    role = declared(view)
    if role is not None:
        return role
    if req.path == DASH_DISPATCH:
        return callback_role(server, req.get_json(silent=True))
    if req.method in SAFE_METHODS:
        return "viewer"  # reading pages, assets and Dash's own GET routes
    return None


def callback_role(server: flask.Flask, body: Any) -> str:
    """A Dash callback's declared role; undeclared callbacks may only read (viewer)."""
    dash_app = server.extensions.get("portal_dash")
    output = body.get("output") if isinstance(body, dict) else None
    if dash_app is None or not isinstance(output, str):
        return "viewer"
    entry = dash_app.callback_map.get(output) or {}
    return declared(entry.get("callback")) or "viewer"


def same_origin() -> bool:
    """The request names the portal itself as its origin (Origin, else Referer)."""
    req = flask.request
    origin = req.headers.get("Origin") or req.headers.get("Referer") or ""
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    scheme = "https" if _is_https() else req.scheme
    return (parts.scheme, parts.netloc) == (scheme, req.host)


def _check() -> WerkzeugResponse | None:
    cfg = routes.settings()
    server = flask.current_app
    req = flask.request
    if req.environ.get(WARMUP):
        return None
    try:
        who, by_cookie = _identify(cfg)
        flask.g.portal_identity = who
        need = needed_role(server)
        if need is None:
            raise Refused(403, f"{req.method} {req.path} declares no role; refused")
        if need == PUBLIC:
            return None
        if req.method not in SAFE_METHODS and by_cookie and not same_origin():
            raise Refused(403, "cross-site request refused: Origin does not match the portal")
        if who.role is None or (who.kind == "anonymous" and not at_least(who.role, need)):
            raise Refused(401, "log in first (or send 'Authorization: Bearer <token>')")
        if not at_least(who.role, need):
            raise Refused(403, f"{who.label} has role {who.role}; this needs {need}")
    except Refused as exc:
        return _refusal(exc)
    return None


def _refusal(exc: Refused) -> WerkzeugResponse:
    req = flask.request
    wants_page = (
        exc.status == 401
        and req.method in SAFE_METHODS
        and not req.path.startswith(("/api/", "/_dash-", "/assets/", "/_favicon"))
    )
    if wants_page:
        target = req.full_path.rstrip("?")
        note = "&expired=1" if flask.g.get("portal_session_ended") else ""
        return flask.redirect(f"/login?next={quote(target)}{note}")
    resp = routes.error_response(exc.status, str(exc))
    if exc.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="obsportal"'
    return resp


def _headers(resp: flask.Response) -> flask.Response:
    for key, value in HEADERS.items():
        resp.headers.setdefault(key, value)
    return resp
