"""Several ``portal web`` instances behind a proxy share nothing but the database.

Two real instances (own ports, own data dirs, one database) and the same ``PORTAL_SECRET_KEY``:
a session made on one is valid on the other, and a logout on one ends it on the other (the end
of sessions is stored in the database). A third instance left to generate its own key (the
default: a file in its data dir) does not accept the cookie: the key is the one setting the
instances must share.
"""

from __future__ import annotations

import secrets
import shutil
import uuid
from pathlib import Path

import httpx

from portal.auth import users
from portal.auth.identity import Identity
from tests.browser import PortalProcess
from tests.conftest import free_port, shared_tmpdir

COOKIE = "obsportal_session"


def _env(url: str, name: str, tmp: Path, key: str | None) -> dict[str, str]:
    env = {
        "PORTAL_DATABASE_URL": url,
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_WEB_WORKERS": "1",
        "PORTAL_DATA_DIR": f"{tmp}/{name}",
        "PORTAL_ANONYMOUS": "none",  # only a valid session gets in
    }
    if key is not None:
        env["PORTAL_SECRET_KEY"] = key
    return env


def test_a_session_made_on_one_instance_is_valid_on_another(database_url: str) -> None:
    tmp = shared_tmpdir("portal-two-web-")
    name, password = f"astro{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(12)
    users.add(database_url, Identity("test", "cli", "admin", "local"), name, "viewer", password)
    key = secrets.token_urlsafe(48)
    try:
        with (
            PortalProcess(_env(database_url, "a", tmp, key), tmp / "a.log") as a,
            PortalProcess(_env(database_url, "b", tmp, key), tmp / "b.log") as b,
            PortalProcess(_env(database_url, "c", tmp, None), tmp / "c.log") as c,
        ):
            assert httpx.get(f"{b.url}/api/whoami").status_code == 401  # no session yet
            login = httpx.post(f"{a.url}/login", data={"user": name, "password": password})
            assert login.status_code == 302, a.log()[-3000:]
            cookie = {COOKIE: login.cookies[COOKIE]}
            on_b = httpx.get(f"{b.url}/api/whoami", cookies=cookie)
            assert on_b.status_code == 200 and on_b.json()["actor"] == name
            # an instance with a key of its own (generated into its data dir) cannot read it
            assert httpx.get(f"{c.url}/api/whoami", cookies=cookie).status_code == 401
            out = httpx.post(f"{a.url}/logout", cookies=cookie, headers={"Origin": a.url})
            assert out.status_code == 302
            assert httpx.get(f"{b.url}/api/whoami", cookies=cookie).status_code == 401
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
