"""Host state at 3 a.m.: one definition (portal/inventory/liveness.py) behind every view.

A Prometheus of this module's own (1 s scrape and evaluation interval, own port and TSDB), its
own database and data dir, real host collectors (``portal collect host``), ``portal web`` under
gunicorn and Chromium: a stopped collector shows ``down`` in the Overview tile, the Hosts table
and ``portal hosts list``; maintenance shows ``maintenance``; with Prometheus stopped the state
comes from the newest stored sample; backfilled and live samples are one series per host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from portal import settings
from portal.db import engine as db_engine
from portal.db import migrate
from portal.db import tables as t
from portal.db.timeseries import ensure_partitions
from portal.demo.backfill import OpenMetricsFile, tsdb_dir
from portal.inventory import liveness
from portal.metrics.client import Prometheus
from portal.stack import configs, process
from portal.stack.process import wait_until
from portal.web import ui
from tests.browser import Browser, PortalProcess
from tests.conftest import REPO, free_port, portal_cmd, run_portal, shared_tmpdir

BACKFILLED = 0.123  # the backfill's value: tells its samples from the live ones
CHROMIUM = Path("/usr/bin/chromium").exists()


@dataclass
class Cluster:
    cfg: settings.Settings
    env: dict[str, str]
    dir: Path
    prometheus_pid: int
    collectors: dict[str, tuple[int, int]] = field(default_factory=dict)  # host -> (port, pid)

    def collect(self, host: str, port: int) -> int:
        """A real host collector for ``host`` on ``port`` (own data dir, so its own spool)."""
        data = self.dir / f"collector-{host}"
        cmd = portal_cmd("collect", "host", "--host", host, "--port", str(port),
                         "--bind", "127.0.0.1", "--interval", "1", "--no-register")  # fmt: skip
        log = open(self.dir / f"collector-{host}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**os.environ, **self.env, "PORTAL_DATA_DIR": str(data)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.collectors[host] = (port, proc.pid)
        answers = lambda: liveness.collector_answers("127.0.0.1", port, timeout=1)  # noqa: E731
        assert wait_until(answers, 60, interval=0.2), f"collector of {host} never answered"
        return proc.pid

    def stop_collector(self, host: str) -> None:
        _, pid = self.collectors.pop(host)
        process.stop(pid)

    def portal(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_portal(*args, env=self.env, check=True)

    def listed(self) -> dict[str, dict]:
        return {h["name"]: h for h in json.loads(self.portal("hosts", "list", "--json").stdout)}


def _backfill(cfg: settings.Settings, host: str, end: datetime) -> None:
    """Three hours of the host's CPU ending at ``end``, through the demo's backfill path."""
    om = OpenMetricsFile()
    try:
        for i in range(180, 0, -1):
            ts = (end - timedelta(minutes=i)).timestamp()
            om.add("obs_host_cpu_usage_ratio", "gauge", host, "", {"cpu": "total"}, BACKFILLED, ts)
        assert om.to_prometheus(cfg) >= 1
    finally:
        om.close()


@pytest.fixture(scope="module")
def cluster(pg_server: str) -> Iterator[Cluster]:
    url = f"{pg_server}/obsportal_live_{os.getpid()}_{free_port()}"
    migrate.upgrade(url)
    tmp = shared_tmpdir("obsportal-liveness-")
    env = {
        "PORTAL_DATABASE_URL": url,
        "PORTAL_DATA_DIR": str(tmp / "var"),
        "PORTAL_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_WEB_WORKERS": "1",
        "PORTAL_ANONYMOUS": "viewer",
        "PORTAL_LOG_LEVEL": "WARNING",
    }
    cfg = settings.load({**{k: v for k, v in os.environ.items() if k.startswith("PORTAL_")}, **env})
    now = datetime.now(UTC)
    with db_engine.get_engine(url).begin() as conn:
        ensure_partitions(conn, "metric_samples", (now - timedelta(days=1)).date(), now.date())
    tsdb_dir(cfg).mkdir(parents=True)
    _backfill(cfg, "cnlive", now - timedelta(minutes=5))  # blocks first: loaded at start
    conf = configs.write(
        tmp / "prometheus.yml", configs.prometheus_config(cfg, scrape_interval="1s")
    )
    cmd = [
        str(shutil.which("prometheus")),
        f"--config.file={conf}",
        f"--storage.tsdb.path={tsdb_dir(cfg)}",
        f"--web.listen-address={configs.hostport(cfg.prometheus_url)}",
    ]
    pid = process.spawn(cmd, tmp / "prometheus.log")
    c = Cluster(cfg, env, tmp, pid)
    try:
        ready = lambda: Prometheus(cfg.prometheus_url).healthy()  # noqa: E731
        assert wait_until(ready, 60, interval=0.2), (tmp / "prometheus.log").read_text()[-2000:]
        yield c
    finally:
        for host in list(c.collectors):
            c.stop_collector(host)
        process.stop(c.prometheus_pid)
        db_engine.dispose_all()
        db_engine.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)


def _hosts_table(browser: Browser) -> dict[str, str]:
    rows = browser.js(
        "return [...document.querySelectorAll('#hosts-table tbody tr')]"
        ".map(r => [...r.cells].map(c => c.innerText))"
    )
    return {r[0]: r[2] for r in rows or []}


def _page(browser: Browser, url: str) -> str:
    browser.driver.get(url)
    browser.wait_rendered()
    return browser.page_text()


@pytest.mark.skipif(not CHROMIUM, reason="needs Debian chromium + chromedriver")
def test_states_agree_everywhere_and_follow_the_collectors(cluster: Cluster) -> None:
    c = cluster
    live_port, gone_port, maint_port = free_port(), free_port(), free_port()
    c.collect("cnlive", live_port)
    out = c.portal("hosts", "add", "cnlive", "--port", str(live_port)).stdout
    assert (
        out.strip()
        == f"host cnlive (compute) added; its collector at 127.0.0.1:{live_port} answers"
    )
    out = c.portal("hosts", "add", "cngone", "--port", str(gone_port)).stdout
    assert f"its collector at 127.0.0.1:{gone_port} does not answer yet" in out
    c.portal("hosts", "add", "cnmaint", "--port", str(maint_port))
    assert c.portal("hosts", "state", "cnmaint", "maintenance").stdout.strip() == (
        "host cnmaint is maintenance"
    )
    c.collect("cngone", gone_port)

    def states() -> dict[str, str]:
        return {n: h["state"] for n, h in c.listed().items()}

    expected = {"cnlive": "up", "cngone": "up", "cnmaint": "maintenance"}
    assert wait_until(lambda: states() == expected, 60, interval=0.5), states()

    # one series per host over a range spanning the backfill and the live scrapes
    prom = Prometheus(c.cfg.prometheus_url)
    end = datetime.now(UTC)
    query = 'obs_host_cpu_usage_ratio{host="cnlive", cpu="total"}'
    result = prom.query_range(query, end - timedelta(hours=4), end, step=15)
    assert len(result) == 1, [s["metric"] for s in result]
    assert set(result[0]["metric"]) == {"__name__", "job", "host", "cpu"}
    values = [(float(ts), float(v)) for ts, v in result[0]["values"]]
    assert any(v == BACKFILLED for _, v in values)  # history
    assert any(ts > end.timestamp() - 60 and v != BACKFILLED for ts, v in values)  # live

    with PortalProcess(c.env, c.dir / "web.log") as web, Browser() as browser:
        _page(browser, web.url + "/")
        tile = lambda: browser.js("return document.getElementById('tile-hosts').innerText")  # noqa: E731
        browser.wait(lambda: tile() == "2 up / 0 down / 1 maintenance", what="the hosts tile")

        # the host page: memory in binary units, holes not bridged
        _page(browser, web.url + "/hosts/cnlive?range=1h")
        script = (
            "return [...document.querySelectorAll('#host-prom-1 .ytick text')]"
            ".map(t => t.textContent)"
        )
        ticks = browser.wait(lambda: browser.js(script), what="memory axis ticks")
        assert all(re.search(r"\d (KiB|MiB|GiB|TiB)$", tick) for tick in ticks), ticks
        plot = "document.querySelector('#host-prom-1 .js-plotly-plot')"
        assert browser.js(f"return {plot}.data[0].connectgaps") is False
        assert "state" in browser.page_text() and "cnlive" in browser.page_text()

        # stop a collector: down in the CLI, the tile and the table
        c.stop_collector("cngone")
        expected["cngone"] = "down"
        assert wait_until(lambda: states() == expected, 60, interval=0.5), states()

        def tile_down() -> bool:
            _page(browser, web.url + "/")
            return tile() == "1 up / 1 down / 1 maintenance"

        assert wait_until(tile_down, 60, interval=0.5), tile()

        def table_right() -> bool:
            _page(browser, web.url + "/hosts")
            return _hosts_table(browser) == expected

        assert wait_until(table_right, 60, interval=0.5), _hosts_table(browser)
        text = c.portal("hosts", "list").stdout
        assert re.search(r"^cngone\s+compute\s+\S+\s+down\s+up$", text, re.MULTILINE), text

        # the same definition in PromQL, as Grafana asks it (docs/metrics.md)
        by_promql = {
            r["metric"]["host"]: r["value"][1] for r in prom.query(liveness.HOST_STATE_PROMQL)
        }
        assert by_promql == {"cnlive": "1", "cngone": "0", "cnmaint": "2"}

        # Prometheus stopped: the newest stored sample decides
        now = datetime.now(UTC)
        c.portal("hosts", "add", "cnold", "--port", str(free_port()))
        c.portal("hosts", "add", "cnnever", "--port", str(free_port()))
        with db_engine.get_engine(c.cfg.database_url).begin() as conn:
            conn.execute(
                sa.insert(t.metric_samples),
                [
                    dict(
                        time=now - timedelta(minutes=10 + i),
                        host="cnold",
                        component="",
                        name="obs_host_cpu_usage_ratio",
                        labels={"cpu": "total"},
                        value=0.5,
                    )
                    for i in range(3)
                ],  # fmt: skip
            )
        process.stop(c.prometheus_pid)
        result = run_portal("hosts", "list", "--json", env=c.env, check=True)
        assert "states from the database's last samples" in result.stderr
        listed = {h["name"]: h for h in json.loads(result.stdout)}
        assert {n: listed[n]["state"] for n in ("cnlive", "cnmaint", "cnold", "cnnever")} == {
            "cnlive": "up",  # its collector still writes every second
            "cnmaint": "maintenance",
            "cnold": "down",
            "cnnever": "unknown",
        }
        assert listed["cnold"]["source"] == "database"
        seen = datetime.fromisoformat(listed["cnold"]["last_seen"])
        assert seen == now - timedelta(minutes=10)
        text = _page(browser, web.url + "/hosts")
        assert "Prometheus unavailable" in text
        table = _hosts_table(browser)
        assert (table["cnold"], table["cnnever"], table["cnmaint"]) == (
            "down",
            "unknown",
            "maintenance",
        )


def test_with_gaps_breaks_lines_where_samples_are_missing() -> None:
    times = pd.to_datetime([0, 15, 30, 120, 135], unit="s", utc=True)
    df = pd.DataFrame({"time": times, "value": [1.0, 2.0, 3.0, 4.0, 5.0]})
    out = ui.with_gaps(df, 15)
    assert out["value"].isna().sum() == 1
    hole = out[out["value"].isna()]["time"].iloc[0]
    assert times[2] < hole < times[3]
    assert ui.with_gaps(df.iloc[:3], 15)["value"].isna().sum() == 0


def test_binary_units() -> None:
    assert ui.human_bytes(3 * 2**30) == "3.0 GiB"
    assert ui.human_bytes(1536, per_second=True) == "1.5 KiB/s"
    assert ui.human_bytes(999) == "999.0 B"
    divisor, axis = ui.bytes_axis(pd.Series([2e9, 3e9]))
    assert divisor == 2**30 and axis["ticksuffix"] == " GiB"
