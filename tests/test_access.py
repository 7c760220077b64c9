"""Access control, tested on the real app (``create_app``), the real CLI and the real database.

Every Flask route and Dash callback of the app (with a probe plugin loaded) is enumerated: the
anonymous visitor is refused everywhere but ``/healthz``, ``/metrics`` and ``/login``; every
mutating route and every callback declares a role, and a token one role short gets 403.
Then the webhook's tokens, login and sessions, the trusted proxy, security headers, the audit
entries of every audited action, ``portal users``/``portal tokens`` and the bootstrap.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import flask
import pytest
import sqlalchemy as sa
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from portal.auth import bootstrap, cli_access, tokens, users
from portal.auth.identity import Identity
from portal.auth.roles import PUBLIC, ROLES, declared
from portal.auth.web import DASH_DISPATCH, HEADERS
from portal.db import engine as db_engine
from portal.db import migrate
from portal.db.tables import api_tokens, audit_log
from portal.errors import PortalError
from portal.events import bus as events
from portal.settings import Settings
from tests.conftest import run_portal

ADMIN = Identity(f"test-admin-{uuid.uuid4().hex[:6]}", "cli", "admin", "local")
PUBLIC_PATHS = {"/healthz", "/metrics", "/login"}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
PASSWORD = "correct horse battery"
OWN_ORIGIN = "http://localhost"  # the Flask test client's host

PROBE_PLUGIN = '''
"""A plugin with a mutating route per role and a page whose callback needs operator."""
from pathlib import Path

import flask

from portal import hookimpl, requires

PAGES = Path({pages!r})


@hookimpl
def register_blueprints(settings):
    bp = flask.Blueprint("acl_probe", __name__)

    @bp.post("/api/acl-probe/scientist")
    @requires("scientist")
    def for_scientists():
        return flask.jsonify({{"ok": "scientist"}})

    @bp.route("/api/acl-probe/admin", methods=["PUT", "DELETE"])
    @requires("admin")
    def for_admins():
        return flask.jsonify({{"ok": "admin"}})

    return [bp]


@hookimpl
def register_pages():
    return [PAGES]
'''

PROBE_PAGE = """
from dash import Input, Output, callback, html

from portal import requires

TITLE = "ACL probe"
PATH = "/acl-probe"


def layout(**params):
    return html.Div([html.Button("go", id="acl-probe-go"), html.Div(id="acl-probe-out")])


@callback(
    Output("acl-probe-out", "children"), Input("acl-probe-go", "n_clicks"),
    prevent_initial_call=True,
)
@requires("operator")
def go(clicks):
    return f"done {clicks}"
"""
PROBE_OUTPUT = "acl-probe-out.children"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _address() -> str:
    """A client address of its own, so per-address login counts never meet other tests'."""
    n = uuid.uuid4().int
    return f"10.{n % 250 + 1}.{(n >> 8) % 250 + 1}.{(n >> 16) % 250 + 1}"


def _client(app: flask.Flask, address: str) -> Any:
    """A test client whose requests come from ``address``."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _audit(database_url: str, target: str) -> list[sa.Row]:
    with db_engine.get_engine(database_url).connect() as conn:
        return list(
            conn.execute(
                sa.select(audit_log).where(audit_log.c.target == target).order_by(audit_log.c.id)
            )
        )


def _one_entry(database_url: str, target: str, action: str) -> sa.Row:
    found = [r for r in _audit(database_url, target) if r.action == action]
    assert len(found) == 1, f"{action} on {target}: {len(found)} audit entries"
    return found[0]


# -- apps ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def probe_dirs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("acl-probe")
    (root / "pages").mkdir()
    (root / "pages" / "acl_probe.py").write_text(textwrap.dedent(PROBE_PAGE))
    (root / "plugins").mkdir()
    (root / "plugins" / "acl_probe.py").write_text(PROBE_PLUGIN.format(pages=str(root / "pages")))
    return root


@pytest.fixture(scope="module")
def secured(cfg: Settings, probe_dirs: Path) -> flask.Flask:
    """The real app with anonymous access off and the probe plugin loaded."""
    from portal.web.app import create_app

    return create_app(cfg.replace(anonymous="none", plugins_dir=probe_dirs / "plugins"))


@pytest.fixture(scope="module")
def strict_cfg(cfg: Settings) -> Settings:
    """Short idle sessions, and 127.0.0.1 (the test client) is a trusted reverse proxy."""
    return cfg.replace(anonymous="none", session_idle_minutes=1, trusted_proxies=("127.0.0.1",))


@pytest.fixture(scope="module")
def strict(strict_cfg: Settings, secured: flask.Flask) -> flask.Flask:
    """Built after ``secured`` (one Dash page registry per process: the newest app's)."""
    from portal.web.app import create_app

    return create_app(strict_cfg)


@pytest.fixture(scope="module")
def role_tokens(cfg: Settings) -> dict[str, str]:
    """A token of every role: role -> secret."""
    return {r: tokens.create(cfg.database_url, ADMIN, _unique(f"acl-{r}"), r) for r in ROLES}


@pytest.fixture
def user(cfg: Settings) -> Iterator[Any]:
    """Make users with the test password: ``user(role)`` -> name."""

    def make(role: str = "operator", password: str | None = PASSWORD) -> str:
        name = _unique(f"u-{role}")
        users.add(cfg.database_url, ADMIN, name, role, password)
        return name

    yield make


def _login(client: Any, name: str, password: str = PASSWORD, **kwargs: Any) -> TestResponse:
    return client.post("/login", data={"user": name, "password": password, "next": "/"}, **kwargs)


def _concrete(rule: Rule) -> str:
    """A path that the rule matches (its variables filled in with sample values)."""
    sample = {"path": "acl-probe", "filename": "x.css", "package_name": "dash"}
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: sample.get(m.group(1), "x.js"), rule.rule)


def _dash_body(output: str, input_id: str, prop: str, value: Any) -> dict[str, Any]:
    out_id, _, out_prop = output.rpartition(".")
    return {
        "output": output,
        "outputs": {"id": out_id, "property": out_prop},
        "inputs": [{"id": input_id, "property": prop, "value": value}],
        "changedPropIds": [f"{input_id}.{prop}"],
        "state": [],
    }


# -- every route, every callback ------------------------------------------------------------------
def test_dash_callbacks_all_declare_a_role_and_are_enforced(
    secured: flask.Flask, role_tokens: dict[str, str]
) -> None:
    dash_app = secured.extensions["portal_dash"]
    roles: dict[str, str | None] = {}
    for output, entry in dash_app.callback_map.items():
        fn = entry.get("callback")
        if fn is None or fn.__module__.split(".")[0] == "dash":
            continue  # clientside, or Dash's own page router (reads the layout: viewer)
        roles[f"{fn.__module__}.{fn.__qualname__} -> {output}"] = declared(fn)
    undeclared = [name for name, role in roles.items() if role is None]
    assert not undeclared, f"Dash callbacks without @requires: {undeclared}"
    probe = [role for name, role in roles.items() if name.endswith(f".go -> {PROBE_OUTPUT}")]
    assert probe == ["operator"]
    assert len(roles) >= 6  # the shell's, the built-in pages' and the probe's

    client = secured.test_client()
    body = _dash_body(PROBE_OUTPUT, "acl-probe-go", "n_clicks", 1)
    assert client.post(DASH_DISPATCH, json=body).status_code == 401
    for role in ("viewer", "scientist"):
        resp = client.post(DASH_DISPATCH, json=body, headers=_bearer(role_tokens[role]))
        assert resp.status_code == 403, role
        assert "needs operator" in resp.get_json()["error"]
    for role in ("operator", "admin"):
        resp = client.post(DASH_DISPATCH, json=body, headers=_bearer(role_tokens[role]))
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert "done 1" in resp.get_data(as_text=True)


def test_anonymous_is_refused_everywhere_but_the_public_routes(secured: flask.Flask) -> None:
    client = secured.test_client()
    public = set()
    checked = 0
    for rule in secured.url_map.iter_rules():
        view = secured.view_functions[rule.endpoint]
        path = _concrete(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if declared(view) == PUBLIC:
                public.add(rule.rule)
                continue
            resp = client.open(path, method=method)
            checked += 1
            where = f"{method} {path} ({rule.rule})"
            if path.startswith(("/api/", "/_dash-")) or method != "GET":
                assert resp.status_code == 401, where
                assert resp.get_json()["error"].startswith("log in first"), where
                assert resp.headers["WWW-Authenticate"].startswith("Bearer"), where
            elif rule.rule in ("/", "/<path:path>"):  # pages: to the login form, and back
                assert resp.status_code == 302, where
                assert resp.headers["Location"] == f"/login?next={path}", where
            else:  # static files and assets: refused either way
                assert resp.status_code in (302, 401), where
                if resp.status_code == 302:
                    assert resp.headers["Location"].startswith("/login?next="), where
    assert public == PUBLIC_PATHS
    assert checked >= 15
    for path in PUBLIC_PATHS:
        assert client.get(path).status_code in (200, 503), (
            path
        )  # /healthz: 503 if a backend is down


def test_every_mutating_route_declares_a_role_and_refuses_a_lower_token(
    secured: flask.Flask, role_tokens: dict[str, str]
) -> None:
    client = secured.test_client()
    seen: dict[str, str] = {}
    for rule in secured.url_map.iter_rules():
        methods = (rule.methods or set()) & MUTATING
        if not methods or rule.rule == DASH_DISPATCH:  # Dash's callbacks are checked above
            continue
        need = declared(secured.view_functions[rule.endpoint])
        assert need is not None, f"{sorted(methods)} {rule.rule} declares no role"
        seen[rule.rule] = need
        if need == PUBLIC:
            continue
        for method in sorted(methods):
            for role in ROLES:
                resp = client.open(
                    _concrete(rule), method=method, headers=_bearer(role_tokens[role])
                )
                where = f"{method} {rule.rule} (needs {need}) with a {role} token"
                if ROLES.index(role) < ROLES.index(need):
                    assert resp.status_code == 403, where
                    assert f"needs {need}" in resp.get_json()["error"], where
                else:
                    assert resp.status_code not in (401, 403), where
    assert seen["/api/alerts"] == "operator"
    assert seen["/login"] == PUBLIC and seen["/logout"] == "viewer"
    assert seen["/api/acl-probe/scientist"] == "scientist"
    assert seen["/api/acl-probe/admin"] == "admin"


def test_security_headers_on_pages_and_api_answers(
    secured: flask.Flask, role_tokens: dict[str, str]
) -> None:
    client = secured.test_client()
    viewer = _bearer(role_tokens["viewer"])
    answers = {
        "healthz": client.get("/healthz"),
        "login page": client.get("/login"),
        "page, anonymous": client.get("/"),
        "page": client.get("/", headers=viewer),
        "api": client.get("/api/whoami", headers=viewer),
        "api, anonymous": client.get("/api/pages"),
        "api, refused": client.post("/api/alerts", json={}, headers=viewer),
    }
    assert answers["page"].status_code == 200 and answers["page"].mimetype == "text/html"
    assert answers["api"].status_code == 200
    assert answers["page, anonymous"].status_code == 302
    assert answers["api, anonymous"].status_code == 401
    assert answers["api, refused"].status_code == 403
    assert HEADERS["X-Frame-Options"] == "DENY"
    assert HEADERS["Content-Security-Policy"] == "frame-ancestors 'none'"
    for what, resp in answers.items():
        assert resp.headers["X-Frame-Options"] == "DENY", what
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"], what
        assert resp.headers["X-Content-Type-Options"] == "nosniff", what
        assert resp.headers["Referrer-Policy"], what


# -- the webhook ----------------------------------------------------------------------------------
def _alert(name: str) -> dict[str, Any]:
    return {
        "version": "4",
        "receiver": "portal",
        "status": "firing",
        "groupKey": "{}:{}",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name, "host": "cn01"},
                "annotations": {"summary": "access test"},
                "startsAt": "2026-12-01T06:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": uuid.uuid4().hex[:16],
            }
        ],
    }


def test_only_the_portals_own_host_names_are_answered(secured: flask.Flask, cfg: Settings) -> None:
    """DNS rebinding: another site's name resolving to 127.0.0.1 gets 400 on every path."""
    from portal.settings import load
    from portal.web.app import host_allowed

    port = cfg.web_port
    for base in ("http://localhost", f"http://127.0.0.1:{port}", f"http://[::1]:{port}"):
        assert secured.test_client().get("/healthz", base_url=base).status_code == 200, base
    for path in ("/healthz", "/api/pages", "/", "/login"):
        resp = secured.test_client().get(path, base_url=f"http://rebind.example:{port}")
        assert resp.status_code == 400, path
        assert resp.get_json() == {
            "error": f"Host 'rebind.example:{port}' is not a name of this portal "
            "(PORTAL_ALLOWED_HOSTS)"
        }
    listed = load({**os.environ, "PORTAL_ALLOWED_HOSTS": "Portal.Example.org, 10.0.0.5:8050"})
    assert listed.host_allow_list == ("portal.example.org", "10.0.0.5:8050")
    assert host_allowed("portal.example.org:443", listed.host_allow_list)
    assert host_allowed("10.0.0.5:8050", listed.host_allow_list)
    assert not host_allowed("10.0.0.5:9999", listed.host_allow_list)
    assert not host_allowed("localhost", listed.host_allow_list)
    assert host_allowed("anything", ("*",))
    with pytest.raises(PortalError, match="PORTAL_ALLOWED_HOSTS: 'a b' is not a host name"):
        load({**os.environ, "PORTAL_ALLOWED_HOSTS": "a b"})


def test_webhook_needs_an_operator_token(
    secured: flask.Flask, cfg: Settings, role_tokens: dict[str, str]
) -> None:
    client = secured.test_client()
    url = cfg.database_url
    name = _unique("AccessAlert")
    before = events.last_id(url)
    refused = [
        (None, 401),
        ({"Authorization": "Bearer obs_not-a-token"}, 401),
        ({"Authorization": f"Basic {role_tokens['operator']}"}, 401),
        (_bearer(role_tokens["viewer"]), 403),
        (_bearer(role_tokens["scientist"]), 403),
    ]
    for headers, status in refused:
        resp = client.post("/api/alerts", json=_alert(name), headers=headers)
        assert resp.status_code == status, headers
    assert events.last_id(url) == before  # nothing stored
    ok = client.post("/api/alerts", json=_alert(name), headers=_bearer(role_tokens["operator"]))
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["recorded"] == 1
    stored = [
        e for e in events.history(url, ["alert"], since=before) if e.payload["alertname"] == name
    ]
    assert len(stored) == 1
    entry = _one_entry(url, name, "alert.received")
    operator = tokens.verify(url, role_tokens["operator"])
    assert operator is not None and operator.last_used_at is not None
    assert entry.actor == f"token:{operator.name}" and entry.role == "operator"


def test_revoked_and_expired_tokens_are_refused(secured: flask.Flask, cfg: Settings) -> None:
    client = secured.test_client()
    url = cfg.database_url
    revoked, expired = _unique("acl-revoked"), _unique("acl-expired")
    secrets = {
        revoked: tokens.create(url, ADMIN, revoked, "operator"),
        expired: tokens.create(
            url, ADMIN, expired, "operator", datetime.now(UTC) + timedelta(hours=1)
        ),
    }
    for secret in secrets.values():
        assert client.get("/api/whoami", headers=_bearer(secret)).status_code == 200
    tokens.revoke(url, ADMIN, revoked)
    with db_engine.get_engine(url).begin() as conn:  # an hour later, without waiting an hour
        conn.execute(
            sa.update(api_tokens)
            .where(api_tokens.c.name == expired)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    states = {t.name: t.state() for t in tokens.list_tokens(url)}
    assert states[revoked] == "revoked" and states[expired] == "expired"
    for name, secret in secrets.items():
        resp = client.post("/api/alerts", json=_alert(name), headers=_bearer(secret))
        assert resp.status_code == 401, name
        assert "unknown, revoked or expired" in resp.get_json()["error"]
        assert client.get("/api/whoami", headers=_bearer(secret)).status_code == 401


# -- login and sessions ---------------------------------------------------------------------------
def test_login_refuses_wrong_password_unknown_and_disabled_users(
    strict: flask.Flask, cfg: Settings, user: Any
) -> None:
    client = _client(strict, _address())
    name, off = user("operator"), user("operator")
    users.set_disabled(cfg.database_url, ADMIN, off, True)
    for who, password in (
        (name, "wrong password!"),
        (_unique("nobody"), PASSWORD),
        (off, PASSWORD),
    ):
        resp = _login(client, who, password)
        assert resp.status_code == 401, who
        assert "Wrong user name or password" in resp.get_data(as_text=True)
        assert client.get("/api/whoami").status_code == 401
    ok = _login(client, name)
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    assert client.get("/api/whoami").get_json() == {
        "actor": name,
        "kind": "user",
        "role": "operator",
    }
    # a disabled user's session ends at the next request
    users.set_disabled(cfg.database_url, ADMIN, name, True)
    assert client.get("/api/whoami").status_code == 401


def test_login_next_only_leads_into_the_portal(strict: flask.Flask, user: Any) -> None:
    name = user("viewer")
    for target, landing in (("/logs?host=cn01", "/logs?host=cn01"), ("//evil.example/", "/")):
        client = _client(strict, _address())
        resp = client.post("/login", data={"user": name, "password": PASSWORD, "next": target})
        assert resp.status_code == 302 and resp.headers["Location"] == landing


def test_sixth_failed_login_for_one_user_is_rate_limited(
    strict: flask.Flask, cfg: Settings, user: Any
) -> None:
    name, other = user("viewer"), user("viewer")
    client = _client(strict, _address())
    for attempt in range(5):
        assert _login(client, name, "wrong password!").status_code == 401, attempt
    limited = _login(client, name)  # the right password does not help now
    assert limited.status_code == 429
    assert "Too many failed logins" in limited.get_data(as_text=True)
    assert client.get("/api/whoami").status_code == 401
    assert _login(client, other).status_code == 302  # the limit is per user
    entries = _audit(cfg.database_url, name)
    assert [e.action for e in entries].count("login.failed") == 5
    assert [e.action for e in entries].count("login.refused") == 1
    assert "login" not in [e.action for e in entries]


def test_session_idle_and_absolute_expiry(
    strict: flask.Flask, strict_cfg: Settings, user: Any
) -> None:
    name = user("viewer")
    client = _client(strict, _address())
    assert _login(client, name).status_code == 302
    assert client.get("/api/whoami").status_code == 200
    # 50 s quiet (idle limit 1 minute): still in, and the idle clock starts again
    with client.session_transaction() as sess:
        sess["seen_at"] = time.time() - 50
    assert client.get("/api/whoami").status_code == 200
    with client.session_transaction() as sess:
        assert time.time() - sess["seen_at"] < 40
    # 2 minutes quiet: the session ended; a page sends the browser to log in again
    with client.session_transaction() as sess:
        sess["seen_at"] = time.time() - 120
    page = client.get("/")
    assert page.status_code == 302
    assert page.headers["Location"] == "/login?next=/&expired=1"
    assert client.get("/api/whoami").status_code == 401
    assert "session ended" in client.get("/login?expired=1").get_data(as_text=True)
    # active all along, but logged in longer ago than session_max_hours
    assert _login(client, name).status_code == 302
    with client.session_transaction() as sess:
        sess["login_at"] = time.time() - strict_cfg.session_max_hours * 3600 - 60
        sess["seen_at"] = time.time()
    assert client.get("/api/whoami").status_code == 401


def test_cookie_requests_need_the_portals_own_origin(
    strict: flask.Flask, cfg: Settings, user: Any, role_tokens: dict[str, str]
) -> None:
    name = user("operator")
    client = _client(strict, _address())
    assert _login(client, name).status_code == 302
    for headers in (
        {},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
    ):
        resp = client.post("/api/alerts", json={}, headers=headers)
        assert resp.status_code == 403, headers
        assert "cross-site" in resp.get_json()["error"]
        assert client.post("/logout", headers=headers).status_code == 403, headers
    for headers in ({"Origin": OWN_ORIGIN}, {"Referer": f"{OWN_ORIGIN}/alerts"}):
        resp = client.post("/api/alerts", json={}, headers=headers)
        assert resp.status_code == 400, headers  # past access control: the body is empty
    # a token needs no Origin (no browser carries it on its own)
    bearer = strict.test_client().post(
        "/api/alerts", json={}, headers=_bearer(role_tokens["operator"])
    )
    assert bearer.status_code == 400
    # nor may another site log a browser in (login CSRF)
    other = _client(strict, _address())
    foreign = _login(other, name, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and other.get("/api/whoami").status_code == 401
    # logout from the portal's own page ends the session
    out = client.post("/logout", headers={"Origin": OWN_ORIGIN})
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert client.get("/api/whoami").status_code == 401
    assert client.get("/").headers["Location"] == "/login?next=/"


def test_logout_and_a_new_password_void_copies_of_the_session_cookie(
    strict: flask.Flask, cfg: Settings, user: Any
) -> None:
    name = user("operator")
    first = _client(strict, _address())
    assert _login(first, name).status_code == 302
    cookie = first.get_cookie("obsportal_session")
    assert cookie is not None
    copy = _client(strict, _address())
    copy.set_cookie("obsportal_session", cookie.value)
    assert copy.get("/api/whoami").get_json()["actor"] == name
    assert first.post("/logout", headers={"Origin": OWN_ORIGIN}).status_code == 302
    assert copy.get("/api/whoami").status_code == 401  # the stolen copy died with the logout
    again = _client(strict, _address())
    assert _login(again, name).status_code == 302  # a new login works
    assert again.get("/api/whoami").get_json()["actor"] == name
    users.set_password(cfg.database_url, ADMIN, name, PASSWORD + "-new")
    assert again.get("/api/whoami").status_code == 401  # a new password ends old sessions


# -- the trusted proxy ----------------------------------------------------------------------------
def test_forwarded_user_counts_only_from_a_trusted_proxy(
    secured: flask.Flask, strict: flask.Flask, cfg: Settings, user: Any
) -> None:
    name, off = user("scientist", password=None), user("operator", password=None)
    users.set_disabled(cfg.database_url, ADMIN, off, True)
    header = {"X-Forwarded-User": name}
    # no trusted proxies at all, or a client that is not one: the header means nothing
    assert secured.test_client().get("/api/whoami", headers=header).status_code == 401
    untrusted = _client(strict, _address())
    assert untrusted.get("/api/whoami", headers=header).status_code == 401
    assert untrusted.get("/", headers=header).status_code == 302
    # from the trusted proxy (127.0.0.1): a registered user, with the role the portal gives
    proxied = strict.test_client()
    resp = proxied.get("/api/whoami", headers={**header, "X-Forwarded-For": "192.0.2.7"})
    assert resp.get_json() == {"actor": name, "kind": "user", "role": "scientist"}
    assert proxied.get("/", headers=header).status_code == 200
    for unknown in (_unique("stranger"), off):
        resp = proxied.get("/api/whoami", headers={"X-Forwarded-User": unknown})
        assert resp.status_code == 403, unknown
        assert "not registered or is disabled" in resp.get_json()["error"]


# -- the audit log --------------------------------------------------------------------------------
def test_login_failed_login_and_logout_each_leave_one_audit_entry(
    strict: flask.Flask, cfg: Settings, user: Any
) -> None:
    name = user("scientist")
    address = _address()
    client = _client(strict, address)
    assert _login(client, name, "wrong password!").status_code == 401
    assert _login(client, name).status_code == 302
    assert client.post("/logout", headers={"Origin": OWN_ORIGIN}).status_code == 302
    entries = _audit(cfg.database_url, name)
    assert [e.action for e in entries] == ["user.add", "login.failed", "login", "logout"]
    added, failed, login, logout = entries
    assert added.actor == ADMIN.label and added.after == {"role": "scientist", "disabled": False}
    assert failed.actor == f"user:{name}" and failed.outcome == "failed" and failed.role == ""
    for entry in (login, logout):
        assert entry.actor == f"user:{name}" and entry.role == "scientist"
        assert entry.outcome == "ok"
    assert {e.source for e in entries[1:]} == {address}
    assert len({e.request_id for e in entries[1:]}) == 3


# -- the CLI --------------------------------------------------------------------------------------
def test_users_and_tokens_through_the_real_cli(
    secured: flask.Flask, strict: flask.Flask, cfg: Settings
) -> None:
    url = cfg.database_url
    name, token = _unique("cli-user"), _unique("cli-token")
    actor = f"cli:{getpass.getuser()}@{socket.gethostname().split('.')[0]}"
    added = run_portal(
        "users",
        "add",
        name,
        "--role",
        "operator",
        "--password-stdin",
        input=PASSWORD + "\n",
        check=True,
    )
    assert added.stdout.strip() == f"user {name} added (operator)"
    again = run_portal("users", "add", name, "--password-stdin", input=PASSWORD + "\n")
    assert again.returncode != 0 and again.stderr.strip() == f"error: user {name!r} already exists"
    short = run_portal("users", "add", _unique("cli-short"), "--password-stdin", input="short\n")
    assert short.returncode != 0 and "at least 10 characters" in short.stderr
    assert len(short.stderr.strip().splitlines()) == 1

    def listed() -> dict[str, Any]:
        out = run_portal("users", "list", "--json", check=True).stdout
        return {u["name"]: u for u in map(json.loads, out.splitlines())}

    assert listed()[name] | {"updated_at": ""} == {
        "name": name,
        "role": "operator",
        "state": "enabled",
        "password": True,
        "updated_at": "",
    }
    assert name in run_portal("users", "list", check=True).stdout
    web = _client(strict, _address())
    assert _login(web, name).status_code == 302  # the password given on stdin works
    role = run_portal("users", "role", name, "scientist", check=True)
    assert role.stdout.strip() == f"user {name} is now scientist"
    assert web.get("/api/whoami").get_json()["role"] == "scientist"  # at once, same session
    assert (
        run_portal("users", "disable", name, check=True).stdout.strip() == f"user {name} disabled"
    )
    assert listed()[name]["state"] == "disabled"
    assert web.get("/api/whoami").status_code == 401
    missing = run_portal("users", "role", _unique("ghost"), "admin")
    assert missing.returncode != 0 and "no user" in missing.stderr

    created = run_portal(
        "tokens", "create", token, "--role", "viewer", "--expires", "1h", check=True
    )
    secret = created.stdout.strip()
    assert secret.startswith(tokens.PREFIX) and "\n" not in secret
    assert "not shown again" in created.stderr and secret not in created.stderr
    api = secured.test_client()
    who = api.get("/api/whoami", headers=_bearer(secret)).get_json()
    assert who == {"actor": token, "kind": "token", "role": "viewer"}
    line = next(
        ln
        for ln in run_portal("tokens", "list", check=True).stdout.splitlines()
        if ln.startswith(token + " ")
    )
    assert line.split()[1:3] == ["viewer", "active"] and actor in line and secret not in line
    assert (
        run_portal("tokens", "revoke", token, check=True).stdout.strip() == f"token {token} revoked"
    )
    line = next(
        ln
        for ln in run_portal("tokens", "list", check=True).stdout.splitlines()
        if ln.startswith(token + " ")
    )
    assert line.split()[1:3] == ["viewer", "revoked"]
    assert api.get("/api/whoami", headers=_bearer(secret)).status_code == 401

    for target, action in [
        (name, "user.add"),
        (name, "user.role"),
        (name, "user.disable"),
        (token, "token.create"),
        (token, "token.revoke"),
    ]:
        entry = _one_entry(url, target, action)
        assert entry.actor == actor and entry.role == "admin" and entry.outcome == "ok", action
    assert _one_entry(url, name, "user.role").before == {"role": "operator", "disabled": False}
    assert _one_entry(url, name, "user.role").after == {"role": "scientist", "disabled": False}
    assert _one_entry(url, name, "user.disable").after == {"role": "scientist", "disabled": True}


@pytest.fixture
def os_user(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This process as a non-root OS user with a name of its own (owning no data dir)."""
    name = _unique("osuser")
    monkeypatch.setattr(os, "geteuid", lambda: 54321)
    monkeypatch.setattr(getpass, "getuser", lambda: name)
    cli_access.current.cache_clear()
    yield name
    cli_access.current.cache_clear()


def test_cli_refuses_a_non_root_user_in_one_line(
    os_user: str, cfg: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from portal.cli import main

    with pytest.raises(PortalError) as refused:
        cli_access.check("admin", "users list")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"`portal users list` needs role admin; {os_user}@")
    assert f"portal users add {os_user} --role admin" in message
    with pytest.raises(SystemExit) as exited:
        main(["tokens", "list"])
    assert exited.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: `portal tokens list` needs role admin;") and "\n" not in err
    # a portal user of the same name gets that user's role
    users.add(cfg.database_url, ADMIN, os_user, "operator", None)
    cli_access.current.cache_clear()
    cli_access.check("operator", "something")
    with pytest.raises(PortalError, match="needs role admin; .* has operator"):
        cli_access.check("admin", "users list")


# -- bootstrap ------------------------------------------------------------------------------------
@pytest.fixture
def empty_database(pg_server: str) -> Iterator[str]:
    """A migrated database with no users at all."""
    url = f"{pg_server}/obsportal_access_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    migrate.upgrade(url)
    yield url
    db_engine.drop_database(url)


def test_ensure_admin_once_and_the_alertmanager_token(
    empty_database: str, cfg: Settings, tmp_path: Path
) -> None:
    fresh = cfg.replace(database_url=empty_database, data_dir=tmp_path / "data")
    password = bootstrap.ensure_admin(fresh)
    assert password
    file = fresh.data_dir / "admin-password"
    assert file.stat().st_mode & 0o777 == 0o600
    assert file.read_text().strip() == password
    (admin,) = users.list_users(empty_database)
    assert (admin.name, admin.role, admin.disabled) == ("admin", "admin", False)
    assert users.authenticate(empty_database, "admin", password) is not None
    assert bootstrap.ensure_admin(fresh) is None
    assert file.read_text().strip() == password and len(users.list_users(empty_database)) == 1

    assert bootstrap.register_alertmanager_token(fresh) is True
    assert bootstrap.register_alertmanager_token(fresh) is False  # idempotent
    token_file = fresh.data_dir / "secrets" / "alertmanager.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    found = tokens.verify(empty_database, token_file.read_text().strip())
    assert found is not None and (found.name, found.role) == ("alertmanager", "operator")
