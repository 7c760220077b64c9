"""The Data and Transfers pages in headless Chromium against the real portal (gunicorn):
copies done, waiting and failing told apart, no error card, no console error; the screenshots
in docs/screenshots come from here."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.data import catalog, rules, sites, transfer
from portal.settings import Settings
from tests.browser import CHROMIUM, Browser, PortalProcess
from tests.conftest import REPO, free_port
from tests.data_fixtures import make_files, product_records, rows, tag

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian chromium + chromedriver"
)
SHOTS = REPO / "docs" / "screenshots"


def test_data_and_transfers_pages_in_a_browser(
    cfg: Settings, portal_env: dict[str, str], tmp_path: Path, dead_port: int
) -> None:
    t = tag()
    files = make_files(tmp_path / "src", 6, 4096)
    catalog.store_products(
        cfg.database_url, rows(product_records(files, "hhat_monthly", f"b-{t}", {"b": t}))
    )
    archive = sites.Site(f"archive-{t}", f"file://{tmp_path / 'archive'}", capacity_bytes=10**15)
    away = sites.Site(
        f"cc-{t}", f"ssh://nobody@127.0.0.1:{dead_port}/project", options={"multiplex": False}
    )
    for site in (archive, away):
        sites.save(cfg.database_url, site)
        rules.add(cfg.database_url, f"{site.name}-rule", "hhat_monthly", site.name, {"b": t}, 3600)
    rules.evaluate(cfg)
    worker = transfer.Worker(cfg)
    while worker.run_once(archive.name):
        pass
    worker.BATCH_FILES = 2
    assert worker.run_once(away.name)  # two fail (site down), four still wait
    rules.evaluate(cfg)

    env = {**portal_env, "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}", "PORTAL_WEB_WORKERS": "1"}
    with PortalProcess(env, tmp_path / "web.log") as portal, Browser() as browser:
        browser.console_errors()
        browser.driver.get(f"{portal.url}/transfers")
        browser.wait_rendered()
        text = browser.wait(
            lambda: browser.page_text() if away.name in browser.page_text() else "",
            what="the queue of the unreachable site",
        )
        assert "failing, will retry" in text and "waiting in queue" in text and "done" in text
        assert "unreachable" in text  # failures by error class
        assert browser.js("return document.querySelectorAll('.portal-error-card').length") == 0
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.driver.save_screenshot(str(SHOTS / "transfers.png"))

        browser.driver.get(f"{portal.url}/data?name=b-{t}/*")
        browser.wait_rendered()
        text = browser.wait(
            lambda: browser.page_text() if f"{away.name}-rule" in browser.page_text() else "",
            what="the replication rules",
        )
        assert f"{archive.name}-rule" in text and "OK" in text and "REPLICATING" in text
        assert f"b-{t}/f0000.dat" in text and f"{archive.name}:AVAILABLE" in text
        assert "Hhat coverage" in text and "days until full" in text
        browser.wait(
            lambda: browser.js("return document.querySelectorAll('.js-plotly-plot .bars').length"),
            what="the bytes-arrived graph",
        )
        assert browser.js("return document.querySelectorAll('.portal-error-card').length") == 0
        assert browser.console_errors() == []
        browser.driver.save_screenshot(str(SHOTS / "data.png"))
