"""The Logs page in the real portal (gunicorn) and headless Chromium: filters from the URL and
the inputs, a bad selector's caret, live tail, and the ``.log`` download."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from portal.db import engine as db_engine
from portal.db.writer import copy_rows
from portal.logs.store import COLUMNS
from portal.settings import Settings
from tests.browser import Browser, PortalProcess
from tests.conftest import free_port, run_portal, shared_tmpdir

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="needs Debian chromium + chromedriver"
)


def insert(url: str, host: str, rows: list[tuple[datetime, str, str, str]]) -> None:
    data = [
        (t, host, comp, level, msg, json.dumps({}), host, t.timestamp())
        for t, comp, level, msg in rows
    ]
    with db_engine.connect_raw(url) as conn, conn.transaction():
        copy_rows(conn, "log_lines", COLUMNS, [(*r[:7], int(r[7] * 1e6)) for r in data])


@pytest.fixture(scope="module")
def page_host(cfg: Settings) -> str:
    host = f"page-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    insert(
        cfg.database_url,
        host,
        [
            (now - timedelta(minutes=30), "l1-beam", "INFO", "beam 0 started"),
            (now - timedelta(minutes=20), "l1-beam", "WARNING", "beam 0 dropped 40 packets"),
            (now - timedelta(minutes=10), "hhat", "ERROR", "stack 12 failed"),
        ],
    )
    return host


@pytest.fixture(scope="module")
def portal(cfg: Settings) -> Iterator[PortalProcess]:
    tmp = shared_tmpdir("portal-logs-page-")
    proc = PortalProcess({"PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}"}, tmp / "web.log")
    proc.start()
    yield proc
    proc.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def shown(browser: Browser) -> str:
    return str(browser.js("return document.getElementById('logs-out').innerText"))


def test_logs_page_filters_tail_and_download(
    portal: PortalProcess, browser: Browser, page_host: str, cfg: Settings
) -> None:
    b, url = browser, portal.url
    b.driver.get(f"{url}/logs?host={page_host}&range=1h")
    b.wait_rendered()
    text = b.wait(lambda: "stack 12 failed" in shown(b) and shown(b), what="the host's lines")
    lines = text.strip().splitlines()
    assert [ln.split(" ", 4)[4] for ln in lines] == [
        "beam 0 started",
        "beam 0 dropped 40 packets",
        "stack 12 failed",
    ]
    assert lines[2].split(" ")[1:4] == [page_host, "hhat", "ERROR"]

    # the download link carries the same filters and gives every line as a .log attachment
    href = b.js("return document.getElementById('logs-download').href")
    resp = httpx.get(href)
    assert resp.status_code == 200 and "attachment" in resp.headers["Content-Disposition"]
    assert resp.headers["Content-Disposition"].split("filename=")[1].strip('"').endswith(".log")
    assert resp.text.splitlines() == lines

    # a regex typed into the grep box narrows the lines
    grep = b.driver.find_element(By.ID, "logs-grep")
    grep.send_keys("dropped", Keys.ENTER)
    b.wait(
        lambda: shown(b).strip().endswith("dropped 40 packets") and "started" not in shown(b),
        what="the grep filter",
    )
    grep.clear()
    grep.send_keys(Keys.ENTER)

    # a bad selector shows the caret under the offending character, not a traceback
    sel = b.driver.find_element(By.ID, "logs-query")
    sel.send_keys('{host="x" component="y"}', Keys.ENTER)
    notice = b.wait(lambda: "bad selector" in b.page_text() and b.page_text(), what="error")
    assert "bad selector at character 11" in notice and "Traceback" not in notice
    sel.clear()
    sel.send_keys(Keys.ENTER)
    b.wait(lambda: "stack 12 failed" in shown(b), what="lines again")

    # live tail: a line stored after the page loaded appears without a reload
    b.driver.find_element(By.CSS_SELECTOR, "#logs-live input").click()
    insert(cfg.database_url, page_host, [(datetime.now(UTC), "l1-beam", "INFO", "fresh line")])
    b.wait(lambda: shown(b).strip().endswith("fresh line"), what="the live line")
    assert b.console_errors() == []
    cli = run_portal("logs", "--host", page_host, check=True).stdout
    assert cli.splitlines()[-1] == shown(b).strip().splitlines()[-1]
