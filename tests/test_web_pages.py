"""The real portal under gunicorn, in headless Chromium: every page, the picker, degraded mode."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from portal.settings import Settings
from portal.stack.process import wait_until
from tests.browser import Browser, PortalProcess
from tests.conftest import REPO, free_port, shared_tmpdir

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="needs Debian chromium + chromedriver"
)
SCREENSHOTS = REPO / "docs" / "screenshots"
PUSHED = """\
obs_hhat_stacks_pending{stack="daily"} 3
obs_hhat_stacks_pending{stack="monthly"} 1
obs_storage_used_bytes{mount="/data",product="l1"} 4e12
obs_storage_capacity_bytes{mount="/data"} 1e13
obs_host_cpu_usage_ratio{cpu="total"} 0.5
obs_process_up{component="l1-beam0"} 1
obs_l1_received_bytes_total{beam="0"} 123456789
"""


@pytest.fixture(scope="module")
def pushed(stack: Settings) -> Settings:
    """Metrics in the real Pushgateway, scraped by the real Prometheus (polled, not slept)."""
    httpx.put(
        f"{stack.pushgateway_url}/metrics/job/webtest/host/cn01", content=PUSHED
    ).raise_for_status()

    def scraped() -> bool:
        r = httpx.get(
            f"{stack.prometheus_url}/api/v1/query", params={"query": "obs_hhat_stacks_pending"}
        )
        return bool(r.json()["data"]["result"])

    assert wait_until(scraped, 60, interval=0.5), "Prometheus never scraped the Pushgateway"
    return stack


@pytest.fixture(scope="module")
def portal(pushed: Settings, web_sample_data: dict[str, object]) -> Iterator[PortalProcess]:
    tmp = shared_tmpdir("portal-web-")
    env = {"PORTAL_WEB_WORKERS": "2", "PORTAL_DATABASE_URL": str(web_sample_data["url"])}
    proc = PortalProcess(env, tmp / "web.log").start()
    yield proc
    proc.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def visit(browser: Browser, url: str) -> str:
    browser.driver.get(url)
    browser.wait_rendered()
    return browser.page_text()


def graph_title(browser: Browser, graph_id: str) -> str:
    """The Plotly title of graph ``graph_id`` once it has drawn."""
    script = f"return document.querySelector('#{graph_id} .js-plotly-plot').layout.title.text"
    return str(browser.wait(lambda: browser.js(script), what=f"graph {graph_id}"))


def test_every_page_and_quicklook_renders_without_console_errors(
    portal: PortalProcess, browser: Browser
) -> None:
    pages = httpx.get(f"{portal.url}/api/pages").json()
    paths = [p["path"] for p in pages if p["path"] != "/host"] + ["/hosts/cn01"]
    assert {"/", "/hosts", "/components", "/events", "/quicklooks"} <= set(paths)
    assert {p["name"] for p in pages if p["section"] == "quicklooks"} >= {
        "Pointing density (RA/Dec)",
        "RFI waterfall (beam x time)",
        "Beam data rate (10 M points)",
        "Hhat backlog and candidates",
    }
    browser.console_errors()
    for path in paths:
        for rng in ("1h", "7d"):  # short and long ranges: PromQL steps of 15 s and 2016 s
            text = visit(browser, f"{portal.url}{path}?range={rng}")
            bad = ".portal-error-card, .portal-notice"
            cards = browser.js(f"return document.querySelectorAll('{bad}').length")
            assert cards == 0, f"{path} shows an error or notice:\n{text[:2000]}"
            assert browser.console_errors() == [], path
    assert "cn01" in visit(browser, portal.url + "/hosts")
    assert "l1-beam0" in visit(browser, portal.url + "/components")
    assert "Hhat daily stacks" in browser.page_text()  # backlog from Prometheus
    hrefs = browser.js("return [...document.querySelectorAll('a')].map(a => a.href)")
    assert any("/logs?host=cn01&component=l1-beam0&range=" in h for h in hrefs), hrefs
    visit(browser, portal.url + "/hosts/cn01?range=24h")
    host_logs = browser.js("return document.getElementById('host-logs-link').href")
    assert host_logs.endswith("/logs?host=cn01&range=24h")
    text = visit(browser, portal.url + "/")
    browser.wait(
        lambda: (
            browser.js("return document.getElementById('tile-backlog').innerText") == "4 stacks"
        ),
        what="the backlog tile from Prometheus",
    )
    # st01 is declared down; cn01 and cn02 are no collector target of this Prometheus
    assert "0 up / 1 down / 2 unknown" in text
    assert graph_title(browser, "overview-l1-rate") == "L1 data rate, last 6h"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.driver.save_screenshot(str(SCREENSHOTS / "overview.png"))


def test_time_range_picker_updates_graph_and_url(portal: PortalProcess, browser: Browser) -> None:
    from selenium.webdriver.common.by import By

    visit(browser, portal.url + "/?range=6h")
    graph_range = (
        "return document.querySelector('#overview-l1-rate .js-plotly-plot').layout.xaxis.range"
    )
    before = browser.wait(lambda: browser.js(graph_range), what="the L1 rate graph")
    browser.driver.find_element(By.CSS_SELECTOR, "#portal-range").click()
    browser.wait(
        lambda: [
            o
            for o in browser.driver.find_elements(By.CSS_SELECTOR, "[role=option]")
            if o.text == "last 24h"
        ]
    )[0].click()
    browser.wait(lambda: "range=24h" in browser.driver.current_url, what="range in the URL")
    after = browser.wait(lambda: (r := browser.js(graph_range)) != before and r, what="new range")
    assert after != before
    assert "L1 data rate, last 24h" in browser.page_text()
    hosts_href = browser.js(
        "return document.querySelector('a[href^=\"/hosts\"]').getAttribute('href')"
    )
    assert hosts_href == "/hosts?range=24h"  # navigation keeps the range: links can be shared
    assert browser.console_errors() == []


def test_custom_range_from_the_url_and_a_bad_one_gets_a_notice(
    portal: PortalProcess, browser: Browser
) -> None:
    visit(browser, portal.url + "/?range=custom&from=2026-01-01T00:00&to=2026-01-02T12:00")
    graph_range = (
        "return document.querySelector('#overview-l1-rate .js-plotly-plot').layout.xaxis.range"
    )
    start, end = browser.wait(lambda: browser.js(graph_range), what="the L1 rate graph")
    assert str(start).startswith("2026-01-01") and str(end).startswith("2026-01-02")
    shown = browser.js("return document.getElementById('portal-from').value")
    assert shown == "2026-01-01T00:00"  # the picker shows the range the link carries
    visit(browser, portal.url + "/?range=custom&from=2026-01-02&to=2026-01-01")
    assert "is not before end" in browser.wait(
        lambda: browser.js("return document.getElementById('portal-range-error').innerText"),
        what="the bad-range notice",
    )


def test_url_parameters_arrive_typed_and_bad_ones_get_a_notice(
    portal: PortalProcess, browser: Browser
) -> None:
    visit(browser, portal.url + "/quicklooks/pointing_density?range=7d")
    assert graph_title(browser, "pointing_density-part-0") == "288 pointings"
    visit(browser, portal.url + "/quicklooks/pointing_density?range=7d&beam=1")
    assert graph_title(browser, "pointing_density-part-0") == "72 pointings"
    text = visit(browser, portal.url + "/quicklooks/pointing_density?beam=abc")
    assert "URL parameter beam='abc' is not a valid int" in text
    assert browser.js("return document.querySelectorAll('.portal-error-card').length") == 0


def test_resampled_quicklook_zooms_statelessly_across_workers(
    portal: PortalProcess, browser: Browser
) -> None:
    visit(browser, portal.url + "/quicklooks/beam_data_rate?points=2000000")
    gd = "document.querySelector('#beam_data_rate-part-0 .js-plotly-plot')"
    title = f"return {gd}.layout.title.text"
    assert browser.wait(lambda: "2,000,000 points" in (browser.js(title) or ""))
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    def drawn() -> tuple[int, float]:
        """Points drawn and the seconds they span (the server sends only the visible slice)."""
        n, first, last = browser.js(f"const x = {gd}.data[0].x; return [x.length, x[0], x.at(-1)]")
        return n, (pd.Timestamp(last) - pd.Timestamp(first)).total_seconds()

    shown = [drawn()]
    assert shown[0][0] >= 1000, shown
    # Drag-zoom into the middle half, three times: whichever of the 2 workers answers each
    # relayout calls layout() again and re-aggregates the visible slice from the data source;
    # none keeps per-user figure state. Re-aggregated: about as many points, a shorter span.
    for _ in range(3):
        drag = browser.driver.find_element(By.CSS_SELECTOR, "#beam_data_rate-part-0 .nsewdrag")
        w = drag.size["width"]
        ActionChains(browser.driver).move_to_element_with_offset(
            drag, -w // 4, 0
        ).click_and_hold().move_by_offset(w // 4, 0).move_by_offset(w // 4, 0).release().perform()
        browser.wait(lambda: drawn()[1] < shown[-1][1] * 0.75, what="re-aggregated zoom")
        shown.append(drawn())
        assert shown[-1][0] >= 1000, shown  # still ~N_OUT points, not a thinning subset
    assert shown[-1][1] < shown[0][1] / 4, shown
    assert browser.console_errors() == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    visit(browser, portal.url + "/quicklooks/rfi_waterfall?range=24h")
    browser.wait(
        lambda: browser.js(
            "return !!document.querySelector('#rfi_waterfall-part-0 .hm')"
            " || !!document.querySelector('#rfi_waterfall-part-0 .heatmaplayer')"
        )
    )
    browser.driver.save_screenshot(str(SCREENSHOTS / "quicklook.png"))


def test_events_page_is_live(
    portal: PortalProcess, browser: Browser, web_sample_data: dict[str, object]
) -> None:
    database_url = str(web_sample_data["url"])
    from portal.events import bus as events

    visit(browser, portal.url + "/events?range=1h")
    browser.wait(lambda: browser.js("return !!document.getElementById('events-table')"))
    assert "webtest.live" not in browser.page_text()
    events.publish(database_url, "webtest.live", {"beam": 3}, source="pytest")
    browser.wait(lambda: "webtest.live" in browser.page_text(), what="the new event on the page")
    assert browser.console_errors() == []


def test_events_page_sends_a_bounded_page(
    portal: PortalProcess, browser: Browser, web_sample_data: dict[str, object]
) -> None:
    """Many events with large payloads: at most 200 rows a refresh, payloads cut, a note, and
    'older' pages through the rest."""
    from selenium.webdriver.common.by import By

    from portal.events import bus as events

    LIMIT, PAYLOAD_CHARS = 200, 300  # portal/web/pages/events.py (not imported: it registers
    # callbacks in this process)

    topic = f"webtest.bulk{uuid.uuid4().hex[:6]}"
    for i in range(LIMIT + 30):
        events.publish(str(web_sample_data["url"]), topic, {"n": i, "blob": "x" * 5000}, "pytest")
    rows = "return document.querySelectorAll('#events-table tbody tr').length"
    visit(browser, f"{portal.url}/events?range=1h&topic={topic}")
    browser.wait(lambda: browser.js(rows) == LIMIT, what=f"{LIMIT} rows")
    note = browser.driver.find_element(By.ID, "events-note").text
    assert f"at most {LIMIT} a page" in note and f"cut at {PAYLOAD_CHARS}" in note, note
    longest = "return Math.max(...[...document.querySelectorAll('#events-table td')]" + (
        ".map(td => td.innerText.length))"
    )
    assert browser.js(longest) <= PAYLOAD_CHARS + 1
    browser.driver.find_element(By.ID, "events-older").click()
    browser.wait(lambda: browser.js(rows) == 30, what="the 30 older events")
    assert "at most" not in browser.driver.find_element(By.ID, "events-note").text
    browser.driver.find_element(By.ID, "events-newest").click()
    browser.wait(lambda: browser.js(rows) == LIMIT, what="back to the newest")
    assert browser.console_errors() == []


def test_healthz_and_metrics_across_workers(portal: PortalProcess) -> None:
    health = httpx.get(f"{portal.url}/healthz").json()
    assert health["status"] == "ok", health
    assert set(health["backends"]) == {"database", "prometheus", "pushgateway", "alertmanager"}
    for _ in range(6):
        assert httpx.get(f"{portal.url}/api/pages").status_code == 200
    text = httpx.get(f"{portal.url}/metrics").text
    served = [
        line
        for line in text.splitlines()
        if line.startswith('portal_http_requests_total{route="/api/pages",status="200"}')
    ]
    assert served and float(served[0].split()[-1]) >= 6  # summed over both workers' files


def test_degraded_mode_every_page_answers_and_names_the_source(
    cfg: Settings, web_sample_data: dict[str, object], browser: Browser
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    tmp = shared_tmpdir("portal-degraded-")
    env = {
        "PORTAL_PROMETHEUS_URL": dead,
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_WEB_WORKERS": "1",
        "PORTAL_DATA_DIR": str(tmp / "var"),
        "PORTAL_DATABASE_URL": str(web_sample_data["url"]),
    }
    with PortalProcess(env, tmp / "web.log") as portal:
        assert httpx.get(f"{portal.url}/healthz").json()["backends"]["prometheus"]["ok"] is False
        for path in (
            "/",
            "/hosts",
            "/hosts/cn01",
            "/components",
            "/events",
            "/quicklooks",
            "/quicklooks/hhat_candidates",
        ):
            assert httpx.get(portal.url + path).status_code == 200
            text = visit(browser, portal.url + path)
            if path not in ("/events", "/quicklooks"):
                assert "Prometheus unavailable" in text, f"{path}: {text[:800]}"
            assert browser.js("return document.querySelectorAll('.portal-error-card').length") == 0
        assert "cn01" in visit(browser, portal.url + "/hosts")  # database parts still shown
    db_env = {
        **env,
        "PORTAL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
    }
    with PortalProcess(db_env, tmp / "web2.log") as portal:
        for path in ("/", "/hosts", "/components", "/quicklooks/rfi_waterfall"):
            assert httpx.get(portal.url + path).status_code == 200
            assert "Database unavailable" in visit(browser, portal.url + path), path
        visit(browser, portal.url + "/events")
        browser.wait(lambda: "Database unavailable" in browser.page_text(), what="events notice")
    browser.console_errors()
    shutil.rmtree(tmp, ignore_errors=True)
