"""Logging in and out in headless Chromium against the real portal (gunicorn) with
``PORTAL_ANONYMOUS=none``: the portal sends the browser to /login, the header names the user and
role, and the logout button (a form POST the Origin check lets through) ends the session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from portal.auth import users
from portal.auth.identity import Identity
from portal.settings import Settings
from tests.browser import Browser, PortalProcess
from tests.conftest import REPO, free_port, shared_tmpdir

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="needs Debian chromium + chromedriver"
)

SCREENSHOT = REPO / "docs" / "screenshots" / "login.png"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def portal() -> Iterator[PortalProcess]:
    """Gunicorn with its own port and data dir (so its own session key); login required."""
    tmp = shared_tmpdir("portal-login-")
    env = {
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_DATA_DIR": str(tmp / "var"),
        "PORTAL_ANONYMOUS": "none",
    }
    proc = PortalProcess(env, tmp / "web.log").start()
    yield proc
    proc.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def test_login_header_and_logout_in_chromium(portal: PortalProcess, cfg: Settings) -> None:
    name = "olga"  # the run's own database: no other test has this user
    admin = Identity("test-login-browser", "cli", "admin", "local")
    users.add(cfg.database_url, admin, name, "operator", PASSWORD)
    with Browser(width=1200, height=800) as b:
        d = b.driver
        d.get(f"{portal.url}/events")
        b.wait(lambda: "/login?next=/events" in d.current_url, what="the redirect to /login")
        d.find_element(By.ID, "login-user").send_keys(name)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(SCREENSHOT))
        # a wrong password first: the form says so and keeps the user name
        d.find_element(By.ID, "login-password").send_keys("not the password")
        d.find_element(By.ID, "login-submit").click()
        b.wait(
            lambda: "Wrong user name or password" in d.find_element(By.ID, "login-error").text,
            what="the login error",
        )
        assert d.find_element(By.ID, "login-user").get_attribute("value") == name
        d.find_element(By.ID, "login-password").send_keys(PASSWORD)
        b.console_errors()  # the wrong password's 401 is logged: not of interest below
        d.find_element(By.ID, "login-submit").click()
        b.wait(lambda: d.current_url == f"{portal.url}/events", what="back to /events")
        b.wait_rendered()
        user = b.wait(lambda: d.find_element(By.ID, "portal-user"), what="#portal-user")
        assert user.text == f"{name} (operator)"
        assert "Events" in b.page_text()
        assert not b.console_errors()  # every asset and callback passed access control
        d.find_element(By.ID, "portal-logout").click()
        b.wait(lambda: d.current_url.startswith(f"{portal.url}/login"), what="back to /login")
        assert d.find_element(By.ID, "login-form")
        d.get(f"{portal.url}/")
        b.wait(lambda: "/login?next=/" in d.current_url, what="logged out for good")
