"""Quicklook plugins in a watched folder: live without restart, broken ones isolated, skeleton."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from portal.stack.process import wait_until
from tests.browser import Browser, PortalProcess
from tests.conftest import free_port, run_portal, shared_tmpdir

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="needs Debian chromium + chromedriver"
)

MINIMAL = '''"""Candidates per beam: the smallest useful quicklook."""
import plotly.express as px

from portal import quicklook as ql

TITLE = "Candidates per beam"


def layout(time_range: ql.TimeRange, min_dm: float = 0.0):
    df = ql.sql("SELECT beam, sum(n_candidates) AS n FROM pointings WHERE time >= :t0 "
                "AND max_dm >= :dm GROUP BY beam ORDER BY beam", t0=time_range.start, dm=min_dm)
    return px.bar(df, x="beam", y="n", title=f"DM >= {min_dm}")
'''
TABLE = '''"""A DataFrame is shown as a sortable table."""
from portal import quicklook as ql

TITLE = "Pointings per beam"


def layout(time_range: ql.TimeRange):
    return ql.sql(
        "SELECT beam, count(*) AS n FROM pointings GROUP BY beam ORDER BY beam = 2 DESC, beam"
    )
'''
PARTS = '''"""A list: each element renders on its own; a failing one shows why at its place."""
import plotly.graph_objects as go

from portal import quicklook as ql

TITLE = "Parts"


def broken():
    raise KeyError("beam 42")


def layout(**params):
    return [
        go.Figure(layout_title_text="first part"),
        broken,
        lambda: ql.sql("SELECT * FROM no_such_table"),
        "**last part**",
    ]
'''
CONTROLS = '''"""Controls from the signature: a number input and a checkbox."""
import plotly.graph_objects as go

TITLE = "Controlled"


def layout(beam: int = 0, log_scale: bool = False):
    fig = go.Figure(go.Scatter(y=[1, 10, 100 * (beam + 1)]))
    fig.update_layout(title=f"beam {beam}", yaxis_type="log" if log_scale else "linear")
    return fig
'''
WRITER = '''"""Tries to write through ql.sql: refused."""
from portal import quicklook as ql

TITLE = "Writer"


def layout(**params):
    ql.sql(
        "INSERT INTO hosts (name, role, address, collector_port, state, labels, created_at, "
        "updated_at) VALUES ('intruder', 'compute', '127.0.0.1', 9105, 'up', '{}', now(), now())"
    )
    return "written"
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
def second(plugins: Path) -> Path:
    """A second watched folder (for two quicklooks with one file name)."""
    path = plugins.parent / (plugins.name + "-second")
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def portal(
    cfg: object, web_sample_data: dict[str, object], plugins: Path, second: Path
) -> Iterator[PortalProcess]:
    env = {
        "PORTAL_QUICKLOOKS_PATH": f"{plugins}:{second}",
        "PORTAL_DATABASE_URL": str(web_sample_data["url"]),
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_WEB_WORKERS": "2",
        "PORTAL_DATA_DIR": str(plugins.parent / (plugins.name + "-var")),
    }
    with PortalProcess(env, plugins.parent / (plugins.name + ".log")) as proc:
        yield proc
    shutil.rmtree(env["PORTAL_DATA_DIR"], ignore_errors=True)
    shutil.rmtree(second, ignore_errors=True)


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
    title = (
        "return document.querySelector('#candidates_per_beam-part-0 .js-plotly-plot')"
        ".layout.title.text"
    )
    assert browser.wait(lambda: browser.js(title)) == "DM >= 500.0"  # typed URL parameter
    (plugins / "candidates_per_beam.py").write_text(
        MINIMAL.replace('"Candidates per beam"', '"Candidates by beam"')
    )
    took = wait_for_page(portal, "/quicklooks/candidates_per_beam", "Candidates by beam")
    print(f"edited plugin live after {took:.1f} s")
    assert browser.console_errors() == []


def error_card(browser: Browser, url: str) -> str:
    browser.driver.get(url)
    return str(
        browser.wait(
            lambda: browser.js(
                "const c = document.querySelector('.portal-error-card');return c && c.innerText"
            ),
            what=f"error card of {url}",
        )
    )


def log_in_as_admin(browser: Browser, portal: PortalProcess) -> None:
    from selenium.webdriver.common.by import By

    from portal.auth import users
    from portal.auth.identity import Identity

    name, password = f"adm{uuid.uuid4().hex[:6]}", "an admin password"
    who = Identity("test-quicklook-plugins", "cli", "admin", "local")
    users.add(portal.env["PORTAL_DATABASE_URL"], who, name, "admin", password)
    d = browser.driver
    d.get(f"{portal.url}/login")
    d.find_element(By.ID, "login-user").send_keys(name)
    d.find_element(By.ID, "login-password").send_keys(password)
    d.find_element(By.ID, "login-submit").click()
    browser.wait(
        lambda: d.find_element(By.ID, "portal-user").text.endswith("(admin)"), what="login"
    )


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
    ids = {}
    for name, error in expect.items():  # an anonymous viewer: one line and a request id
        card = error_card(browser, f"{portal.url}/quicklooks/{name}")
        assert f"{name}.py" in card and "Traceback" not in card and error not in card, card
        found = re.search(r"request id (\w+)", card)
        assert found, card
        ids[name] = found.group(1)
    with Browser() as admin:  # an admin's session: the traceback
        log_in_as_admin(admin, portal)
        for name, error in expect.items():
            card = error_card(admin, f"{portal.url}/quicklooks/{name}")
            assert error in card and f"{name}.py" in card and "Traceback" in card, card
    for path, marker in (("/", "Hosts"), ("/quicklooks/candidates_per_beam", "Candidates")):
        browser.driver.get(portal.url + path)
        browser.wait_rendered()
        assert browser.js("return document.querySelectorAll('.portal-error-card').length") == 0
        assert marker in browser.page_text()
    log = portal.log()
    for name, error in expect.items():
        assert f"{name}.py" in log, f"portal log does not name {name}.py"
        after = log[log.index(f"(request {ids[name]})") :]  # the viewer's id, then the traceback
        assert "Traceback" in after and error in after, name
    for name in BROKEN:
        (plugins / name).unlink()
    assert wait_until(lambda: "/quicklooks/bad_callback" not in pages(portal), 60, interval=0.2)


def test_quicklook_new_writes_a_working_skeleton(
    portal: PortalProcess, plugins: Path, browser: Browser
) -> None:
    watched = {"PORTAL_QUICKLOOKS_PATH": str(plugins)}
    result = run_portal("quicklook", "new", "beam_rfi", "--dir", str(plugins), env=watched)
    assert result.returncode == 0, result.stderr
    assert "/quicklooks/beam_rfi" in result.stdout and "does not watch" not in result.stdout
    skeleton = (plugins / "beam_rfi.py").read_text()
    assert "dash" not in skeleton and len(skeleton.strip().splitlines()) <= 20
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


def part(browser: Browser, page: str, index: int, script: str) -> object:
    """Evaluate ``script`` (JS body using ``el``) on element ``index`` of ``page``, polled."""
    js = (
        f"const el = document.getElementById('{page}-part-{index}'); if (!el) return null; {script}"
    )
    return browser.wait(lambda: browser.js(js), what=f"{page} part {index}")


def test_a_dataframe_is_a_sortable_table(
    portal: PortalProcess, plugins: Path, browser: Browser
) -> None:
    (plugins / "beam_table.py").write_text(TABLE)
    wait_for_page(portal, "/quicklooks/beam_table", "Pointings per beam")
    browser.driver.get(portal.url + "/quicklooks/beam_table?range=7d")
    browser.wait_rendered()
    cells = (
        "return [...document.querySelectorAll('#beam_table-part-0 td[data-dash-column=beam]')]"
        ".map(td => td.innerText.trim())"
    )
    assert browser.wait(lambda: browser.js(cells), what="table cells") == ["2", "0", "1", "3"]
    browser.js(
        "document.querySelector('#beam_table-part-0 th[data-dash-column=beam] "
        ".column-header--sort').click()"
    )
    ordered = browser.wait(
        lambda: (c := browser.js(cells)) != ["2", "0", "1", "3"] and c, what="sorted table"
    )
    assert ordered in (["0", "1", "2", "3"], ["3", "2", "1", "0"]), ordered
    assert browser.console_errors() == []


def test_each_list_element_fails_on_its_own(
    portal: PortalProcess, plugins: Path, browser: Browser
) -> None:
    (plugins / "parts_list.py").write_text(PARTS)
    wait_for_page(portal, "/quicklooks/parts_list", "Parts")
    browser.driver.get(portal.url + "/quicklooks/parts_list")
    browser.wait_rendered()
    title = "const g = el.querySelector('.js-plotly-plot'); return g && g.layout.title.text"
    assert part(browser, "parts_list", 0, title) == "first part"
    card = str(part(browser, "parts_list", 1, "return el.innerText"))
    assert "parts_list.py" in card and "request id" in card and "Traceback" not in card
    assert part(browser, "parts_list", 1, "return !!el.querySelector('.portal-error-card')")
    notice = str(part(browser, "parts_list", 2, "return el.innerText"))
    assert "no_such_table" in notice and "Traceback" not in notice
    assert part(browser, "parts_list", 2, "return !!el.querySelector('.portal-notice')")
    assert part(browser, "parts_list", 3, "return el.innerText.trim()") == "last part"
    assert "parts_list.py" in portal.log() and "KeyError: 'beam 42'" in portal.log()


def test_signature_controls_change_the_url_and_the_graph(
    portal: PortalProcess, plugins: Path, browser: Browser
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    (plugins / "controlled.py").write_text(CONTROLS)
    wait_for_page(portal, "/quicklooks/controlled", "Controlled")
    browser.driver.get(portal.url + "/quicklooks/controlled?range=24h&beam=1")
    browser.wait_rendered()
    graph = "return document.querySelector('#controlled-part-0 .js-plotly-plot').layout"
    assert browser.wait(lambda: browser.js(graph + ".title.text")) == "beam 1"
    labels = browser.js(
        "return [...document.querySelectorAll('.portal-control span')].map(s => s.innerText)"
    )
    assert labels[:2] == ["beam", "log scale"], labels
    number = browser.driver.find_element(By.CSS_SELECTOR, ".portal-control input[type=number]")
    assert number.get_attribute("value") == "1"
    number.send_keys(Keys.BACKSPACE, "3", Keys.ENTER)
    browser.wait(lambda: "beam=3" in browser.driver.current_url, what="beam=3 in the URL")
    assert "range=24h" in browser.driver.current_url  # the picker's keys stay
    assert browser.wait(lambda: browser.js(graph + ".title.text") == "beam 3", what="new graph")
    assert browser.js(graph + ".yaxis.type") == "linear"
    browser.driver.find_element(By.CSS_SELECTOR, ".portal-control input[type=checkbox]").click()
    browser.wait(lambda: "log_scale=true" in browser.driver.current_url, what="log_scale in URL")
    assert browser.wait(lambda: browser.js(graph + ".yaxis.type") == "log", what="log axis")
    assert "beam=3" in browser.driver.current_url and "range=24h" in browser.driver.current_url
    browser.driver.get(portal.url + "/quicklooks/controlled?beam=lots")
    browser.wait_rendered()
    assert "URL parameter beam='lots' is not a valid int" in browser.page_text()
    assert browser.js("return document.querySelectorAll('.portal-error-card').length") == 0
    assert browser.console_errors() == []


def test_sql_is_read_only(
    portal: PortalProcess, plugins: Path, browser: Browser, web_sample_data: dict[str, object]
) -> None:
    import sqlalchemy as sa

    from portal.db.engine import get_engine

    def hosts() -> list[str]:
        with get_engine(str(web_sample_data["url"])).connect() as conn:
            return sorted(conn.execute(sa.text("SELECT name FROM hosts")).scalars())

    before = hosts()
    (plugins / "writer.py").write_text(WRITER)
    wait_for_page(portal, "/quicklooks/writer", "Writer")
    browser.driver.get(portal.url + "/quicklooks/writer")
    browser.wait_rendered()
    text = browser.wait(
        lambda: browser.js(
            "const n = document.querySelector('.portal-notice'); return n && n.innerText"
        ),
        what="the read-only notice",
    )
    assert text.startswith("read-only") and "INSERT" in text and "\n" not in text.strip(), text
    assert "written" not in browser.page_text()
    assert hosts() == before and "intruder" not in before


def test_same_file_name_in_two_folders_both_load(
    portal: PortalProcess, plugins: Path, second: Path, browser: Browser
) -> None:
    from portal.web.loader import _slug

    (plugins / "twin.py").write_text('TITLE = "Twin A"\n\ndef layout():\n    return "from A"\n')
    (second / "twin.py").write_text('TITLE = "Twin B"\n\ndef layout():\n    return "from B"\n')
    other = f"/quicklooks/{_slug(second.name)}-twin"
    wait_for_page(portal, "/quicklooks/twin", "Twin A")
    wait_for_page(portal, other, "Twin B")
    listed = pages(portal)
    assert listed["/quicklooks/twin"]["file"] == str(plugins / "twin.py")
    assert listed[other]["file"] == str(second / "twin.py")
    for path, text in (("/quicklooks/twin", "from A"), (other, "from B")):
        browser.driver.get(portal.url + path)
        browser.wait_rendered()
        browser.wait(lambda t=text: t in browser.page_text(), what=path)
    browser.driver.get(portal.url + "/quicklooks")
    browser.wait_rendered()
    notice = browser.wait(
        lambda: browser.js(
            "const n = document.querySelector('.portal-notice'); return n && n.innerText"
        ),
        what="the clash notice",
    )
    assert f"{plugins / 'twin.py'} at /quicklooks/twin" in notice, notice
    assert f"{second / 'twin.py'} at {other}" in notice, notice
    (second / "twin.py").unlink()
    (plugins / "twin.py").unlink()
    assert wait_until(lambda: other not in pages(portal), 60, interval=0.2)


def test_quicklook_new_into_an_unwatched_folder_prints_the_setting(plugins: Path) -> None:
    elsewhere = plugins.parent / (plugins.name + "-elsewhere")
    try:
        result = run_portal(
            "quicklook",
            "new",
            "far_away",
            "--dir",
            str(elsewhere),
            env={"PORTAL_QUICKLOOKS_PATH": str(plugins)},
        )
        assert result.returncode == 0, result.stderr
        assert (elsewhere / "far_away.py").exists()
        assert f"does not watch {elsewhere}" in result.stdout, result.stdout
        assert f"PORTAL_QUICKLOOKS_PATH={plugins}:{elsewhere}" in result.stdout, result.stdout
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)
