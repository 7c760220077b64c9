#!/usr/bin/env python3
"""CPU cost of the host collector per scrape, against prometheus-node-exporter in the same run.

Starts both exporters (the collector samples at the scrape interval and writes every sample
to PostgreSQL, as in production), scrapes each the same number of times, and compares the CPU
seconds each process used. Uses ``PORTAL_DATABASE_URL`` when set, else a throwaway database on
127.0.0.1:5432 that is dropped at the end. Last line: ``RESULT ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate  # noqa: E402
from portal.stack import process  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def scrape(port: int) -> int:
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    resp.raise_for_status()
    return len(resp.text.splitlines())


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scrapes", type=int, default=30)
    ap.add_argument("--interval", type=float, default=1.0, help="Seconds between scrapes.")
    args = ap.parse_args()

    node_bin = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if node_bin is None:
        sys.exit(
            "error: prometheus-node-exporter not found (apt-get install prometheus-node-exporter)"
        )
    own_db = "PORTAL_DATABASE_URL" not in os.environ
    url = os.environ.get(
        "PORTAL_DATABASE_URL",
        f"postgresql://postgres@127.0.0.1:5432/bench_collector_{uuid.uuid4().hex[:8]}",
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")},
        "PORTAL_DATABASE_URL": url,
        "PORTAL_DATA_DIR": str(tmp / "var"),
        "PORTAL_LOG_LEVEL": "WARNING",
    }
    pids: list[int] = []
    try:
        migrate.upgrade(url)
        cport, nport = free_port(), free_port()
        collector = subprocess.Popen(
            [sys.executable, "-m", "portal", "collect", "host", "--port", str(cport),
             "--bind", "127.0.0.1", "--host", "bench-host", "--no-register",
             "--interval", str(args.interval)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        pids.append(collector.pid)
        node = subprocess.Popen(
            [node_bin, f"--web.listen-address=127.0.0.1:{nport}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        pids.append(node.pid)
        for port in (cport, nport):
            if not process.wait_until(lambda p=port: ready(p), 30):
                sys.exit(f"error: exporter on port {port} did not start")
        for _ in range(3):  # warm-up: imports, first samples, connections
            scrape(cport), scrape(nport)
            time.sleep(args.interval)
        c0, n0 = cpu_seconds(collector.pid), cpu_seconds(node.pid)
        lines = {"collector": 0, "node_exporter": 0}
        start = time.monotonic()
        for i in range(args.scrapes):
            lines["collector"] = scrape(cport)
            lines["node_exporter"] = scrape(nport)
            time.sleep(max(0.0, start + (i + 1) * args.interval - time.monotonic()))
        c_ms = (cpu_seconds(collector.pid) - c0) / args.scrapes * 1000
        n_ms = (cpu_seconds(node.pid) - n0) / args.scrapes * 1000
        rows = _rows(url)
    finally:
        for pid in reversed(pids):
            process.stop(pid)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if own_db:
            db_engine.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = c_ms / n_ms if n_ms > 0 else float("inf")
    share = c_ms / 10_000.0  # one sampling + scrape + DB write every 10 s
    print(f"scrapes: {args.scrapes} every {args.interval:g} s; collector samples at that interval")
    print(f"collector:     {c_ms:7.2f} ms CPU per scrape ({lines['collector']} lines exposed)")
    print(f"node_exporter: {n_ms:7.2f} ms CPU per scrape ({lines['node_exporter']} lines exposed)")
    print(f"ratio collector / node_exporter: {ratio:.2f}")
    print(f"collector at a 10 s interval: {share * 100:.3f}% of one core; {rows} rows written")
    print(
        f"RESULT collector_cpu_ms_per_scrape={c_ms:.2f} node_exporter_cpu_ms_per_scrape={n_ms:.2f} "
        f"vs_node_exporter={ratio:.2f} core_share_at_10s={share:.5f}"
    )


def _rows(url: str) -> int:
    import psycopg

    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM metric_samples WHERE host = 'bench-host'"
        ).fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    main()
