"""The pipeline simulator: `demo seed` backfills idempotently, `demo run` feeds the real path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import UTC, datetime

import psycopg

from portal.db import engine as db_engine
from portal.demo import model
from portal.inventory import registry as inventory
from portal.metrics.client import Prometheus
from portal.settings import Settings
from portal.stack import process
from portal.stack.process import wait_until
from tests.conftest import REPO, portal_cmd, run_portal

SMALL = ("--compute-nodes", "2", "--beams-per-node", "4", "--storage-nodes", "1")


def _one(url: str, sql: str, *args: object) -> int:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


def test_sky_and_rfi_patterns_follow_time() -> None:
    # the Galactic centre (RA 17.8 h) overhead raises the data rate over the quiet sky
    t = datetime(2026, 6, 1, tzinfo=UTC)
    hours = [t.replace(hour=h) for h in range(24)]
    factors = [model.sky_factor(h) for h in hours]
    peak = hours[factors.index(max(factors))]
    assert abs(model.sidereal_hours(peak) - 17.76) < 1.0
    assert max(factors) > 1.4 * min(factors)


def test_seed_backfills_at_the_requested_rate_and_is_idempotent(
    cfg: Settings, database_url: str
) -> None:
    args = ("demo", "seed", "--days", "2", "--pointings-per-day", "2000", "--step", "1800", *SMALL)
    first = run_portal(*args, check=True, timeout=300)
    assert "seeded 2 days" in first.stdout
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    full_days = "SELECT count(*) FROM pointings WHERE time < %s"
    assert _one(database_url, full_days, midnight) == 2 * 2000  # the rate asked for, exactly
    counts = {
        t: _one(database_url, f"SELECT count(*) FROM {t}")
        for t in ("metric_samples", "pointings", "beam_events", "data_products")
    }
    assert all(counts.values()), counts
    run_portal(*args, check=True, timeout=300)  # again: nothing twice
    assert {t: _one(database_url, f"SELECT count(*) FROM {t}") for t in counts} == counts
    kinds = _one(
        database_url,
        "SELECT count(DISTINCT kind) FROM data_products WHERE kind IN ('l1', 'rfi', 'hhat_daily')",
    )
    assert kinds == 3
    days_of_samples = _one(
        database_url,
        "SELECT count(DISTINCT date_trunc('day', time)) FROM metric_samples "
        "WHERE name = 'obs_l1_received_bytes_total'",
    )
    assert days_of_samples >= 3  # two full days and today's part


def test_bad_seed_option_is_one_clear_line(cfg: Settings) -> None:
    result = run_portal("demo", "seed", "--days", "0")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --days 0 is out of range (1 to 400)"


def test_demo_run_hosts_are_healthy_targets_and_rows_flow(stack: Settings) -> None:
    url = stack.database_url
    cmd = portal_cmd("demo", "run", "--speed", "600", "--base-port", "0", "--mirror-seconds", "1",
                     *SMALL)  # fmt: skip
    started = datetime.now(UTC)
    # an operator put st01 in maintenance before (re)starting the demo
    inventory.add_host(stack, "st01", "storage", collector_port=1, state="maintenance")
    proc = subprocess.Popen(cmd, cwd=REPO, env=os.environ.copy(), stderr=subprocess.PIPE)
    sim_hosts = {"head01", "cn01", "cn02", "st01", "batch01"}
    try:
        names = lambda: {h.name for h in inventory.list_hosts(stack)}  # noqa: E731
        assert wait_until(lambda: sim_hosts <= names(), 60, interval=0.2)
        st01 = lambda: inventory.get_host(stack, "st01")  # noqa: E731
        assert wait_until(lambda: st01().collector_port != 1, 60, interval=0.2)  # re-registered
        assert st01().state == "maintenance"  # and still in maintenance
        prom = Prometheus(stack.prometheus_url)

        def healthy() -> set[str]:
            return {
                t["labels"]["host"]
                for t in prom.targets()
                if t["health"] == "up" and t["labels"].get("host") in sim_hosts
            }

        assert wait_until(lambda: healthy() == sim_hosts, 60, interval=0.5), healthy()
        q = 'obs_l1_received_bytes_total{host="cn02", beam="7", component="l1"}'
        assert wait_until(lambda: (prom.scalar(q) or 0) > 0, 30, interval=0.5), q
        cpu = 'obs_host_cpu_usage_ratio{host="st01", cpu="total"}'  # host-level, no component
        assert 0 <= (prom.scalar(cpu) or -1) <= 1
        # each simulated component's process is up, as a host collector reports it
        running = prom.query('obs_process_up{host="cn02", component="l1"}')
        assert [float(r["value"][1]) for r in running] == [1.0]
        assert "exported_host" not in running[0]["metric"]

        def rows(table: str, where: str = "TRUE") -> int:
            return _one(url, f"SELECT count(*) FROM {table} WHERE time >= %s AND {where}", started)

        assert wait_until(lambda: rows("metric_samples", "host = 'cn01'") > 0, 30, interval=0.2)
        host_level = "host = 'cn01' AND component = '' AND name = 'obs_host_memory_total_bytes'"
        assert rows("metric_samples", host_level) > 0
        assert wait_until(lambda: rows("pointings") > 0, 30, interval=0.2)
        seen = rows("metric_samples")
        assert wait_until(lambda: rows("metric_samples") > seen, 30, interval=0.2)  # flowing
        # the simulator writes JSON-line logs per host, where the shipper looks by default
        logs = stack.data_dir / "log" / "demo"
        assert wait_until(lambda: any(p.stat().st_size for p in logs.glob("*.log")), 30)
        first = json.loads(next(p for p in logs.glob("cn0*.log")).read_text().splitlines()[0])
        assert {"time", "level", "host", "component", "msg"} <= set(first)
        assert first["host"].startswith("cn0")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            process.stop(proc.pid)
            for h in sim_hosts:
                inventory.remove_host(stack, h)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_seed_can_backfill_prometheus_without_restart(stack: Settings) -> None:
    args = ("demo", "seed", "--days", "1", "--step", "1800", "--pointings-per-day", "500")
    out = run_portal(*args, "--prometheus", *SMALL, check=True, timeout=300)
    assert "Prometheus blocks added" in out.stdout
    prom = Prometheus(stack.prometheus_url)
    # only the backfill has samples 6 h and more ago; Prometheus loads new blocks within ~1 min.
    # 12 h: the history starts at midnight UTC a day ago, so 18 h back always lie within it
    query = (
        'count_over_time(obs_storage_capacity_bytes{host="st01", job="collectors"}[12h] offset 6h)'
    )
    # one sample per 30 min over the 12 h, once every block of them is loaded
    assert wait_until(lambda: prom.scalar(query) == 24, 120, interval=1.0), prom.scalar(query)
    # the dashboards' recording rules were evaluated over that history too (promtool)
    assert "of recorded series" in out.stdout, out.stdout
    recorded = 'count_over_time(host_beam:obs_l1_lag_seconds:max5m{host="cn01"}[1d] offset 6h)'
    assert wait_until(lambda: (prom.scalar(recorded) or 0) > 0, 120, interval=1.0), recorded


def test_backfill_without_a_local_prometheus_is_one_clear_line(tmp_path: object) -> None:
    env = {"PORTAL_DATA_DIR": str(tmp_path)}
    result = run_portal("demo", "seed", "--days", "1", "--prometheus", *SMALL, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: no local Prometheus TSDB at ")
