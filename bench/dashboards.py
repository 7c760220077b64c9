#!/usr/bin/env python3
"""Every Grafana panel query on 30 days of simulator data: time per query and the slowest.

Self-contained: a throwaway database on PORTAL_DATABASE_URL's server (default 127.0.0.1:5432,
dropped at the end) seeded by the simulator, and a private Prometheus on a free port over a
TSDB backfilled with the same simulator history and the dashboards' recording rules evaluated
over it (promtool), stopped at the end. Each query
runs --repeat times (median reported), first over each dashboard's own default range (what a
user opening it gets; the RESULT figures), then over the whole history (the `full_` figures).
Target: every query <= 200 ms.
The ``backend`` figures are the backends' own time: Prometheus's evaluation time (its query
statistics), SQL as the driver saw it; the rest is moving and decoding the answer in Python.
Last line: RESULT panels=... queries=... median_ms=... slowest_ms=... over_200ms=... failed=...
full_median_ms=... full_slowest_ms=... full_over_200ms=... full_backend_slowest_ms=...
full_backend_over_200ms=...
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import make_url  # noqa: E402

from portal import settings  # noqa: E402
from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate  # noqa: E402
from portal.grafana import harness, provisioning, sample_data  # noqa: E402
from portal.metrics.client import Prometheus  # noqa: E402
from portal.stack import process  # noqa: E402

TARGET_MS = 200.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--prom-step", type=float, default=120.0, help="Seconds between samples.")
    ap.add_argument("--compute-nodes", type=int, default=8)
    ap.add_argument("--beams-per-node", type=int, default=4)
    ap.add_argument("--storage-nodes", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]  # progress in logs

    server = os.environ.get("PORTAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    url = (
        make_url(db_engine.sqlalchemy_url(server))
        .set(drivername="postgresql", database=f"obsportal_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    os.environ["PORTAL_DATABASE_URL"] = url
    settings.get.cache_clear()
    cfg = settings.get()
    layout = sample_data.hosts(args.compute_nodes, args.beams_per_node, args.storage_nodes)
    tmp = Path(tempfile.mkdtemp(prefix="obsportal-bench-dash-"))
    pid = None
    try:
        migrate.upgrade(url)
        t0 = time.perf_counter()
        rows = sample_data.seed_database(cfg, args.days, 300, layout)
        print(
            f"database: {make_url(url).database}, {rows:,} rows in {time.perf_counter() - t0:.0f} s"
        )
        end = datetime.now(UTC)
        start = end - timedelta(days=args.days)
        t0 = time.perf_counter()
        hist = sample_data.backfill_prometheus(
            tmp / "tsdb", start, end, args.prom_step, timedelta(hours=1), layout
        )
        print(
            f"prometheus: {hist.series} series, {hist.samples:,} samples "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        t0 = time.perf_counter()
        blocks = sample_data.backfill_recording_rules(tmp / "tsdb", start, end)
        print(f"recording rules: {blocks} blocks in {time.perf_counter() - t0:.0f} s")
        port = free_port()
        pid = sample_data.serve_prometheus(tmp / "tsdb", port, tmp / "prometheus.log")
        prom = Prometheus(f"http://127.0.0.1:{port}", timeout=60)
        dashboards = provisioning.load_dashboards()

        def timed(start_of: dict[str, datetime]) -> list[tuple[harness.Result, float, float]]:
            # the data's scrape interval is --prom-step: what the datasource's timeInterval says
            runs = [
                [
                    r
                    for name, model in dashboards.items()
                    for r in harness.run_dashboards(
                        {name: model}, prom, url, start_of[name], end, scrape_s=args.prom_step
                    ).results
                ]
                for _ in range(args.repeat)
            ]
            return [
                (
                    r,
                    statistics.median(run[i].seconds for run in runs) * 1000,
                    statistics.median(_server(run[i]) for run in runs) * 1000,
                )
                for i, r in enumerate(runs[0])
            ]

        own = {
            n: end - timedelta(seconds=harness.default_range_s(m)) for n, m in dashboards.items()
        }
        default = timed(own)
        full = timed({n: start for n in dashboards})
    finally:
        if pid:
            process.stop(pid)
        db_engine.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)

    ranges = ", ".join(sorted({str(end - t) for t in own.values()}))
    print(f"== each dashboard's default range ({ranges})")
    d = report(default)
    print(f"== the whole {args.days} days")
    f = report(full)
    print(
        f"RESULT panels={d['panels']} queries={d['queries']} median_ms={d['median']:.1f} "
        f"slowest_ms={d['slowest']:.1f} over_200ms={d['over']} failed={d['failed']} "
        f"full_median_ms={f['median']:.1f} full_slowest_ms={f['slowest']:.1f} "
        f"full_over_200ms={f['over']} full_backend_slowest_ms={f['server_slowest']:.1f} "
        f"full_backend_over_200ms={f['server_over']}"
    )


def _server(r: harness.Result) -> float:
    """The backend's own time: Prometheus's evaluation time; SQL's as the driver saw it."""
    return r.seconds if r.server_seconds is None else r.server_seconds


def report(timings: list[tuple[harness.Result, float, float]]) -> dict[str, float]:
    """Print each query's median time (and the backend's own), slowest first; return the
    summary figures."""
    ran = [(r, ms, srv) for r, ms, srv in timings if not r.skipped]
    for r, ms, srv in sorted(ran, key=lambda x: -x[1]):
        t = r.target
        flag = "" if r.ok else f"  FAILED: {r.error or 'no data'}"
        print(
            f"{ms:9.1f} ms ({srv:6.1f} in the backend)  "
            f"{t.dashboard} / {t.panel} [{t.ref_id}] {t.kind}{flag}"
        )
    skipped = [r.target for r, _, _ in timings if r.skipped]
    print(f"skipped {len(skipped)}: " + ", ".join(f"{t.dashboard}/{t.panel}" for t in skipped))
    slow_r, slow_ms, _ = max(ran, key=lambda x: x[1])
    print(f"slowest: {slow_ms:.1f} ms  {slow_r.target.dashboard} / {slow_r.target.panel}")
    panels = {
        (r.target.dashboard, r.target.panel) for r, _, _ in ran if r.target.kind != "variable"
    }
    return {
        "panels": len(panels),
        "queries": len(ran),
        "median": statistics.median(ms for _, ms, _ in ran),
        "slowest": slow_ms,
        "over": sum(1 for _, ms, _ in ran if ms > TARGET_MS),
        "failed": sum(1 for r, _, _ in ran if not r.ok),
        "server_slowest": max(srv for _, _, srv in ran),
        "server_over": sum(1 for _, _, srv in ran if srv > TARGET_MS),
    }


if __name__ == "__main__":
    main()
