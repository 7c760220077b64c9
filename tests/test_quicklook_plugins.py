"""Quicklook plugins in a watched folder: live without restart, broken ones isolated, skeleton."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from portal.stack.process import wait_until
from portal.web.browser import Browser, PortalProcess
from tests.conftest import free_port, run_portal, shared_tmpdir

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="needs Debian chromium + chromedriver"
)

MINIMAL = '''"""Candidates per beam: the smallest useful quicklook."""
import plotly.express as px
from dash import dcc

from portal import quicklook as ql

TITLE = "Candidates per beam"


def layout(time_range: ql.TimeRange, min_dm: float = 0.0):
    df = ql.sql("SELECT beam, sum(n_candidates) AS n FROM pointings WHERE time >= :t0 "
                "AND max_dm >= :dm GROUP BY beam ORDER BY beam", t0=time_range.start, dm=min_dm)
    return dcc.Graph(id="cpb-graph", figure=px.bar(df, x="beam", y="n", title=f"DM >= {min_dm}"))
'''
BROKEN = {
    "bad_syntax.py": 'TITLE = "Bad syntax"\ndef layout(:\n',
    "bad_import.py": 'TITLE = "Bad import"\nraise RuntimeError("calibration table missing")\n',
    "bad_layout.py": 'TITLE = "Bad layout"\ndef layout(**params):\n    return 1 / 0\n',
    "bad_callback.py": """TITLE = "Bad callback"
from dash import Input, Output, callback, html
def layout(**params):
    return html.Div([html.Span("ok", id="badcb-in"), html.Span(id="badcb-out")])
@callback(Output("badcb-out", "children"), Input("badcb-in", "children"))
def explode(value):
    raise KeyError("beam 99")
""",
}


@pytest.fixture(scope="module")
def plugins() -> Iterator[Path]:
    path = shared_tmpdir("portal-plugins-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def portal(
    cfg: object, web_sample_data: dict[str, object], plugins: Path
) -> Iterator[PortalProcess]:
    env = {
        "PORTAL_QUICKLOOKS_PATH": str(plugins),
        "PORTAL_DATABASE_URL": str(web_sample_data["url"]),
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_WEB_WORKERS": "2",
        "PORTAL_DATA_DIR": str(plugins.parent / (plugins.name + "-var")),
    }
    with PortalProcess(env, plugins.parent / (plugins.name + ".log")) as proc:
        yield proc
    shutil.rmtree(env["PORTAL_DATA_DIR"], ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def pages(portal: PortalProcess) -> dict[str, dict[str, str]]:
    try:
        return {p["path"]: p for p in httpx.get(f"{portal.url}/api/pages", timeout=5).json()}
    except (httpx.HTTPError, ValueError):
        return {}  # a worker restarting mid-request


def wait_for_page(portal: PortalProcess, path: str, title: str) -> float:
    """Seconds until every worker serves ``path`` with ``title`` (polled, generous deadline)."""
    t0 = time.monotonic()

    def live() -> bool:  # ask several times: each worker must have reloaded
        return all(pages(portal).get(path, {}).get("name") == title for _ in range(4))

    assert wait_until(live, 60, interval=0.2), f"{path} never appeared: {portal.log()[-1500:]}"
    return time.monotonic() - t0


def test_dropped_plugin_appears_live_and_edits_apply(
    portal: PortalProcess, plugins: Path, browser: Browser
) -> None:
    assert len(MINIMAL.strip().splitlines()) <= 15
    (plugins / "candidates_per_beam.py").write_text(MINIMAL)
    took = wait_for_page(portal, "/quicklooks/candidates_per_beam", "Candidates per beam")
    print(f"new plugin live after {took:.1f} s")
    browser.driver.get(portal.url + "/quicklooks/candidates_per_beam?min_dm=500&range=7d")
    browser.wait_rendered()
    nav = browser.js(
        "return Array.from(document.querySelectorAll('.portal-quicklooks a')).map(a => a.innerText)"
    )
    assert "Candidates per beam" in nav
    title = "return document.querySelector('#cpb-graph .js-plotly-plot').layout.title.text"
    assert browser.wait(lambda: browser.js(title)) == "DM >= 500.0"  # typed URL parameter
    (plugins / "candidates_per_beam.py").write_text(
        MINIMAL.replace('"Candidates per beam"', '"Candidates by beam"')
    )
    took = wait_for_page(portal, "/quicklooks/candidates_per_beam", "Candidates by beam")
    print(f"edited plugin live after {took:.1f} s")
    assert browser.console_errors() == []


def test_broken_plugins_are_isolated_with_traceback_and_logged(
    portal: PortalProcess, plugins: Path, browser: Browser
) -> None:
    for name, text in BROKEN.items():
        (plugins / name).write_text(text)
    wait_for_page(portal, "/quicklooks/bad_callback", "Bad callback")
    listed = pages(portal)
    assert "SyntaxError" in listed["/quicklooks/bad_syntax"]["error"]
    assert "calibration table missing" in listed["/quicklooks/bad_import"]["error"]
    expect = {
        "bad_syntax": "SyntaxError",
        "bad_import": "RuntimeError: calibration table missing",
        "bad_layout": "ZeroDivisionError",
        "bad_callback": "KeyError: 'beam 99'",
    }
    for name, error in expect.items():
        browser.driver.get(f"{portal.url}/quicklooks/{name}")
        card = browser.wait(
            lambda: browser.js(
                "const c = document.querySelector('.portal-error-card');return c && c.innerText"
            ),
            what=f"error card of {name}",
        )
        assert error in card and f"{name}.py" in card and "Traceback" in card, card
    for path, marker in (("/", "Hosts"), ("/quicklooks/candidates_per_beam", "Candidates")):
        browser.driver.get(portal.url + path)
        browser.wait_rendered()
        assert browser.js("return document.querySelectorAll('.portal-error-card').length") == 0
        assert marker in browser.page_text()
    log = portal.log()
    for name in expect:
        assert f"{name}.py" in log, f"portal log does not name {name}.py"
    for name in BROKEN:
        (plugins / name).unlink()
    assert wait_until(lambda: "/quicklooks/bad_callback" not in pages(portal), 60, interval=0.2)


def test_quicklook_new_writes_a_working_skeleton(
    portal: PortalProcess, plugins: Path, browser: Browser
) -> None:
    result = run_portal("quicklook", "new", "beam_rfi", "--dir", str(plugins), check=True)
    assert "/quicklooks/beam_rfi" in result.stdout
    again = run_portal("quicklook", "new", "beam_rfi", "--dir", str(plugins))
    assert again.returncode == 1 and again.stderr.startswith("error: ") and "exists" in again.stderr
    bad = run_portal("quicklook", "new", "9 lives", "--dir", str(plugins))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    wait_for_page(portal, "/quicklooks/beam_rfi", "Beam rfi")
    browser.driver.get(portal.url + "/quicklooks/beam_rfi?beam=2&range=24h")
    browser.wait_rendered()
    title = "return document.querySelector('.js-plotly-plot').layout.title.text"
    assert browser.wait(lambda: browser.js(title)) == "Beam 2: RFI-masked fraction"
    assert browser.js("return document.querySelectorAll('.portal-error-card').length") == 0
    assert browser.console_errors() == []
