"""Login and logout (a plain HTML form, so it needs no Dash), and ``/api/whoami``.

Failed logins are audited; the same entries rate-limit further attempts per user and per
address, so every gunicorn worker sees one count with no extra store.
"""

from __future__ import annotations

import html
import logging
import time
from datetime import UTC, datetime, timedelta

import flask
import sqlalchemy as sa
from werkzeug.wrappers import Response as WerkzeugResponse

from portal import routes
from portal.apidoc import describe
from portal.auth import audit, users
from portal.auth.identity import Identity
from portal.auth.roles import PUBLIC, requires
from portal.auth.web import same_origin
from portal.db.engine import get_engine
from portal.db.tables import audit_log

log = logging.getLogger("portal.auth")
blueprint = flask.Blueprint("auth", __name__)

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in · obsportal</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #1d2330; color: #e8ecf2; }}
form {{ max-width: 22em; margin: 12vh auto; padding: 2em; background: #272f40;
        border-radius: 8px; display: grid; gap: .8em; }}
input, button {{ font-size: 1em; padding: .5em; }}
.error {{ color: #ffb4a8; }} .note {{ color: #c8d0dc; font-size: .9em; }}
.error:empty {{ display: none; }}
</style></head><body>
<form method="post" action="/login" id="login-form">
<h2>obsportal</h2>
<p class="error" id="login-error">{error}</p>
<label>User <input name="user" id="login-user" autocomplete="username" value="{user}"
  autofocus required></label>
<label>Password <input name="password" id="login-password" type="password"
  autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{next}">
<button type="submit" id="login-submit">Log in</button>
<p class="note">Machines use <code>Authorization: Bearer &lt;token&gt;</code>
(<code>portal tokens create</code>).</p>
</form></body></html>
"""


def _next_path(raw: str | None) -> str:
    """Only a path on this portal: never an absolute or protocol-relative URL."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    return raw


def _page(error: str = "", user: str = "", status: int = 200) -> flask.Response:
    body = PAGE.format(
        error=html.escape(error),
        user=html.escape(user),
        next=html.escape(_next_path(flask.request.values.get("next"))),
    )
    resp = flask.Response(body, status=status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _recent_failures(database_url: str, column: sa.ColumnElement[str], value: str) -> int:
    since = datetime.now(UTC) - WINDOW
    query = (
        sa.select(sa.func.count())
        .select_from(audit_log)
        .where(audit_log.c.action == "login.failed", audit_log.c.time >= since, column == value)
    )
    with get_engine(database_url).connect() as conn:
        return int(conn.execute(query).scalar_one())


@blueprint.get("/login")
@requires(PUBLIC)
def login_form() -> flask.Response:
    expired = flask.request.args.get("expired") == "1"
    return _page("Your session ended; please log in again." if expired else "")


@blueprint.post("/login")
@requires(PUBLIC)
def login() -> WerkzeugResponse:
    cfg = routes.settings()
    who = routes.identity()
    name = flask.request.form.get("user", "").strip()[:64]
    password = flask.request.form.get("password", "")
    attempt = Identity(name or "-", "user", None, who.address, who.request_id)
    if by_cookie_site_mismatch():
        return _page("This form must be sent from the portal's own login page.", name, 403)
    per_user = _recent_failures(cfg.database_url, audit_log.c.target, name)
    per_addr = _recent_failures(cfg.database_url, audit_log.c.source, who.address)
    if per_user >= MAX_FAILURES_PER_USER or per_addr >= MAX_FAILURES_PER_ADDRESS:
        audit.record(
            cfg.database_url,
            attempt,
            audit.Entry("login.refused", name, "refused", reason="too many failed logins"),
        )
        return _page("Too many failed logins; wait 15 minutes.", name, 429)
    row = users.authenticate(cfg.database_url, name, password)
    if row is None:
        log.warning("failed login for %r from %s", name, who.address)
        audit.record(cfg.database_url, attempt, audit.Entry("login.failed", name, "failed"))
        return _page("Wrong user name or password, or the user is disabled.", name, 401)
    flask.session.clear()
    now = time.time()
    flask.session.update(user=row.name, login_at=now, seen_at=now)
    flask.session.permanent = True
    ok = Identity(row.name, "user", row.role, who.address, who.request_id)
    audit.record(cfg.database_url, ok, audit.Entry("login", row.name))
    return flask.redirect(_next_path(flask.request.form.get("next")))


def by_cookie_site_mismatch() -> bool:
    """A login form posted from another site (login CSRF): its Origin names that site."""
    has_origin = bool(flask.request.headers.get("Origin") or flask.request.headers.get("Referer"))
    return has_origin and not same_origin()


@blueprint.post("/logout")
@requires("viewer")
def logout() -> WerkzeugResponse:
    cfg = routes.settings()
    who = routes.identity()
    if who.kind == "user":
        users.end_sessions(cfg.database_url, who.actor)  # a copy of the cookie dies as well
        audit.record(cfg.database_url, who, audit.Entry("logout", who.actor))
    flask.session.clear()
    return flask.redirect("/login")


@blueprint.get("/api/whoami")
@requires("viewer")
@describe(
    "Who this request is, and with which role",
    responses={
        200: {
            "type": "object",
            "required": ["actor", "kind", "role"],
            "properties": {
                "actor": {"type": "string"},
                "kind": {"type": "string", "enum": ["user", "token", "anonymous", "cli"]},
                "role": {"type": ["string", "null"]},
            },
        }
    },
    tags=["auth"],
)
def whoami() -> flask.Response:
    who = routes.identity()
    return flask.jsonify({"actor": who.actor, "kind": who.kind, "role": who.role})
