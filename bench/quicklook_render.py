"""Time to first render in headless Chromium: the 10 M-point resampled quicklook vs a plain
plotly figure of 1 M points, served by the same real portal (gunicorn, 2 workers) in one run.

Self-contained: a throwaway database (or PORTAL_DATABASE_URL), a temp plugin folder holding the
plain 1 M-point page, the portal on a free port; everything is stopped and removed at the end.
Last line: RESULT resampled_10m_first_render_s=... plain_1m_first_render_s=... speedup=...
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate  # noqa: E402
from tests.browser import Browser, PortalProcess  # noqa: E402

RUNS = {"resampled": 5, "plain": 2}  # plain 1 M points takes minutes per render here
PLAIN = '''"""A plain plotly figure of 1 M points: what the resampled quicklook is compared with."""
import numpy as np
import plotly.graph_objects as go

TITLE = "Plain 1M"


def layout(**params):
    y = np.random.default_rng(0).normal(48, 1.5, 1_000_000).astype(np.float32)
    return go.Figure(go.Scattergl(y=y, mode="lines"))
'''
RENDERED = """
const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
if (!gd || !gd._fullData || !gd._fullData.length) return false;
const t = gd._fullData[0];  // typed arrays arrive base64-encoded: count the decoded trace
return (t._length || (t.y && t.y.length) || 0) > 0;
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_render(browser: Browser, url: str, graph: str) -> float:
    """Seconds from navigation to the graph drawn with its data."""
    browser.driver.get("about:blank")
    t0 = time.perf_counter()
    browser.driver.get(url)
    browser.wait(lambda: browser.js(RENDERED, graph), timeout=300, what=f"{graph} on {url}")
    return time.perf_counter() - t0


def main() -> None:
    own_db = "PORTAL_DATABASE_URL" not in os.environ
    url = os.environ.get(
        "PORTAL_DATABASE_URL",
        f"postgresql://postgres@127.0.0.1:5432/obsportal_bench_{uuid.uuid4().hex[:8]}",
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-quicklook-"))
    plugins = tmp / "plugins"
    plugins.mkdir()
    (plugins / "plain_1m.py").write_text(PLAIN)
    env = {
        "PORTAL_DATABASE_URL": url,
        "PORTAL_DATA_DIR": str(tmp / "var"),
        "PORTAL_QUICKLOOKS_PATH": str(plugins),
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_WEB_WORKERS": "2",
        "PORTAL_LOG_LEVEL": "WARNING",
    }
    for key in ("PROMETHEUS", "PUSHGATEWAY", "ALERTMANAGER"):
        env.setdefault(f"PORTAL_{key}_URL", f"http://127.0.0.1:{free_port()}")
    try:
        migrate.upgrade(url)
        with PortalProcess(env, tmp / "web.log") as portal, Browser() as browser:
            pages = {
                # each page's first layout() element: the portal wraps it in <page>-part-0
                "resampled": (f"{portal.url}/quicklooks/beam_data_rate", "#beam_data_rate-part-0"),
                "plain": (f"{portal.url}/quicklooks/plain_1m", "#plain_1m-part-0"),
            }
            link, graph = pages["resampled"]
            for _ in range(4):  # warm the JS bundles and both workers' cached data source
                first_render(browser, link, graph)
            times = {
                key: [first_render(browser, *pages[key]) for _ in range(RUNS[key])] for key in pages
            }
            errors = browser.console_errors()
        res = statistics.median(times["resampled"])
        plain = statistics.median(times["plain"])
        for key, values in times.items():
            print(f"{key}: " + " ".join(f"{v:.2f}" for v in values) + " s", file=sys.stderr)
        if errors:
            print(f"browser console errors: {errors}", file=sys.stderr)
        print(
            f"RESULT resampled_10m_first_render_s={res:.3f} plain_1m_first_render_s={plain:.3f} "
            f"speedup={plain / res:.1f}"
        )
    finally:
        if own_db:
            db_engine.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
