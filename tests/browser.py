"""Drive the real portal in headless Debian Chromium: shared by the browser tests and the bench.

``PortalProcess`` runs ``portal web`` (gunicorn) as a child and stops it by PID; ``chrome()``
builds a Selenium driver with the flags that avoid network stalls on these machines.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from portal.errors import BackendUnavailable
from portal.stack.process import stop, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[1]


class PortalProcess:
    """``portal web`` in a subprocess with the given ``PORTAL_*`` environment."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.url = "http://" + self.env["PORTAL_WEB_BIND"]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> PortalProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "portal", "web"],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_until(self._healthy, timeout, interval=0.2):
            self.stop()
            raise BackendUnavailable(f"portal web did not answer /healthz: {self.log()[-2000:]}")
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            return False
        try:
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """SIGINT (gunicorn's quick shutdown: no wait for idle keep-alive connections)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGINT)
            if not wait_until(lambda: self.proc is None or self.proc.poll() is not None, 15):
                stop(self.proc.pid, timeout=15)
            self.proc.wait(timeout=5)
            self.proc = None

    def __enter__(self) -> PortalProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Browser:
    """A headless Chromium session with its own profile dir, closed (and removed) on exit."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="portal-chrome-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
        ):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))

    def wait(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
        """Poll ``predicate`` until truthy; AssertionError naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except Exception:  # noqa: BLE001 - element not there yet, stale, ...
                last = None
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or predicate}")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def page_text(self) -> str:
        return str(self.js("return document.body ? document.body.innerText : ''"))

    def console_errors(self) -> list[str]:
        """Browser console messages at SEVERE level since the last call."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def wait_rendered(self, timeout: float = 30.0) -> None:
        """Until Dash has rendered a page (its title heading) and no callback is pending."""
        self.wait(
            lambda: self.js(
                "return !!document.querySelector('.portal-page-title') && "
                "!document.querySelector('[data-dash-is-loading=\"true\"]')"
            ),
            timeout,
            "a rendered page",
        )

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
