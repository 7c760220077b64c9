#!/usr/bin/env python3
"""A rolling restart through the ops framework against a plain ``ssh host command`` loop.

Self-contained: N real sshd "hosts" on 127.0.0.1 (``tests/ops_fixtures.py``), each running a
component process that ``svc restart`` really stops and starts; a throwaway database on
``PORTAL_DATABASE_URL``'s server (dropped at the end). Both sides restart the same component on
every host, health gates excluded from both:

- the baseline: ``ssh -p PORT host svc restart HOST l1``, one host after the other (a new
  connection each, as an operator's loop does);
- the rollout: ``runs.request("update", hosts, component=l1, gate=no)`` (a rolling restart)
  executed by the real ops worker (claim, host locks, every step stored, audited and published,
  asyncssh), timed from the request until the run is finished; batch size 1, then 4. The
  worker keeps its SSH connections open between runs, as it does in production: its first run
  (new connections) is printed too, not counted.

Each figure is the median of ``--rounds`` rounds. Last line:
``RESULT hosts=8 rollout_s=... ssh_loop_s=... overhead_ratio=...`` (rollout with batch size 1
over the loop; target <= 1.5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import make_url  # noqa: E402

from portal import settings as portal_settings  # noqa: E402
from portal.auth.identity import Identity  # noqa: E402
from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate  # noqa: E402
from portal.inventory import registry  # noqa: E402
from portal.ops import runs  # noqa: E402
from portal.ops.worker import Worker  # noqa: E402
from portal.settings import Settings  # noqa: E402
from tests import ops_fixtures  # noqa: E402

ADMIN = Identity("bench", "cli", "admin", "local")  # only an admin may skip the health gates


def ssh_loop(fleet: ops_fixtures.Fleet) -> float:
    """Seconds for ``ssh host svc restart HOST l1`` over every host, one after the other."""
    t0 = time.perf_counter()
    for h in fleet.hosts:
        argv = [*h.sshd.ssh_command(), "127.0.0.1", str(fleet.svc), "restart", h.name, "l1"]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - t0


def rollout(cfg: Settings, names: list[str], batch: str) -> float:
    """Seconds from requesting a rolling restart until the worker finished it."""
    t0 = time.perf_counter()
    run_id = runs.request(
        cfg, ADMIN, "update", names, {"component": "l1", "batch": batch, "gate": "no"}, "bench"
    )
    while not (run := runs.get(cfg, run_id)).finished:
        time.sleep(0.01)
    took = time.perf_counter() - t0
    if run.state != "succeeded":
        raise SystemExit(f"rollout failed: {run.error}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    server = os.environ.get("PORTAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
    url = (
        make_url(db_engine.sqlalchemy_url(server))
        .set(drivername="postgresql", database=f"obsportal_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    root = Path(tempfile.mkdtemp(prefix="obsportal-bench-ops-", dir="/tmp"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")},
        "PORTAL_DATABASE_URL": url,
        "PORTAL_DATA_DIR": str(root / "var"),
        "PORTAL_LOG_LEVEL": "WARNING",
    }
    fleet = None
    worker = None
    thread = None
    cold_s = one_s = four_s = loop_s = 0.0
    restarts = 0
    try:
        migrate.upgrade(url)
        base = portal_settings.load(env)
        names = [f"bench{i:02d}" for i in range(args.hosts)]
        fleet = ops_fixtures.start_fleet(root / "fleet", names, base, collector=False)
        cfg = fleet.settings(base)
        for name in names:
            port = fleet.add_unit(name, "l1")
            registry.add_component(cfg, name, "l1", metrics_port=port)
        worker = Worker(cfg, threads=1)
        thread = threading.Thread(target=worker.serve, daemon=True)
        thread.start()
        cold_s = rollout(cfg, names, "1")  # first run: imports, new SSH connections
        ssh_loop(fleet)
        loop_s = statistics.median(ssh_loop(fleet) for _ in range(args.rounds))
        one_s = statistics.median(rollout(cfg, names, "1") for _ in range(args.rounds))
        four_s = statistics.median(rollout(cfg, names, "4") for _ in range(args.rounds))
        restarts = sum(line.startswith("restart l1 via ") for n in names for line in fleet.calls(n))
    finally:
        if worker is not None and thread is not None:
            worker.stop.set()
            thread.join(timeout=60)
        if fleet is not None:
            fleet.stop()
        db_engine.dispose_all()
        db_engine.drop_database(url)
        shutil.rmtree(root, ignore_errors=True)
    print(f"hosts {args.hosts}, median of {args.rounds} rounds, {restarts} restarts done in all")
    print(f"ssh loop (sequential)   {loop_s:.3f} s")
    print(f"rollout, batch size 1   {cold_s:.3f} s  first run: new connections, imports")
    print(f"rollout, batch size 1   {one_s:.3f} s  ({one_s / loop_s:.2f} x the loop)")
    print(f"rollout, batch size 4   {four_s:.3f} s  ({four_s / loop_s:.2f} x the loop)")
    print(
        f"RESULT hosts={args.hosts} rollout_s={one_s:.3f} ssh_loop_s={loop_s:.3f} "
        f"overhead_ratio={one_s / loop_s:.2f}"
    )


if __name__ == "__main__":
    main()
