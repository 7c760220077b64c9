#!/usr/bin/env python3
"""Backlog-driven scheduling vs plain ``sbatch`` of everything, on a real single-node Slurm.

Self-contained: starts its own munged + slurmctld + slurmd (8 CPUs declared, 2 held for
real-time work, the rest the batch partition) and a throwaway database on PORTAL_DATABASE_URL's
server (both removed at the end). The same ``--jobs`` short batch jobs (``sleep --seconds``) run
twice in the same run: once submitted all at once with plain ``sbatch`` (the baseline), once fed
by the portal's scheduler from its work queue. In each phase one real-time job is submitted
when a third of the batch work is done; its delay is Slurm's start time minus its submit time
(whole seconds). Last line:
``RESULT jobs=N sched_makespan_s=... sbatch_makespan_s=... makespan_ratio=... realtime_delay_s=...``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from portal import settings  # noqa: E402
from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate  # noqa: E402
from portal.sched import localslurm  # noqa: E402
from portal.sched import work as queue  # noqa: E402
from portal.sched.options import options  # noqa: E402
from portal.sched.scheduler import Scheduler  # noqa: E402
from portal.sched.slurm import Slurm  # noqa: E402

PLUGIN = """
from portal import hookimpl
from portal.hookspecs import WorkKind


@hookimpl
def register_work_kinds():
    return [WorkKind("bench", "a short batch job", command="sleep {seconds} # {{key}}",
                     memory_mb=64)]
"""
SHAPE = localslurm.Shape(cpus=8, memory_mb=8192, realtime_cpus=2)


def _realtime(slurm: Slurm, seconds: float) -> int:
    return slurm.submit(
        "rt-bench", f"sleep {seconds}", localslurm.REALTIME, SHAPE.realtime_cpus, 64
    )


def _delay(slurm: Slurm, job_id: int) -> float:
    """Slurm's start minus submit time of a finished or running job (whole seconds)."""
    job = next(j for j in slurm.jobs() if j.id == job_id)
    assert job.started and job.submitted, job
    return (job.started - job.submitted).total_seconds()


def plain_sbatch(slurm: Slurm, n: int, seconds: float) -> tuple[float, float]:
    """Submit all ``n`` at once; (makespan, real-time delay)."""
    t0 = time.monotonic()
    ids = {
        slurm.submit(f"plain-{i}", f"sleep {seconds}", localslurm.BATCH, 1, 64) for i in range(n)
    }
    rt = None
    while True:
        jobs = [j for j in slurm.jobs() if j.id in ids]
        done = sum(not j.active for j in jobs)
        if rt is None and done >= n // 3:
            rt = _realtime(slurm, seconds * 3)
        if done == n:
            break
        time.sleep(0.05)
    makespan = time.monotonic() - t0
    assert all(j.state == "COMPLETED" for j in slurm.jobs() if j.id in ids)
    return makespan, _delay(slurm, rt) if rt is not None else 0.0


def scheduled(
    cfg: settings.Settings, slurm: Slurm, n: int, seconds: float, max_pending: int
) -> tuple[float, float]:
    """Enqueue ``n`` items and let the scheduler run them; (makespan, real-time delay)."""
    opts = dataclasses.replace(
        options(cfg),
        poll_seconds=0.2,
        max_pending=max_pending,
        max_jobs=100000,
        cooldown_seconds=30,
        stabilization_seconds=60,
    )
    t0 = time.monotonic()
    queue.enqueue(cfg, "bench", [f"k{i}" for i in range(n)])
    sched = Scheduler(cfg, slurm, opts)
    rt = None
    while True:
        started = time.monotonic()
        step = sched.step()
        done = n - (step.queued + step.pending + step.running)
        if rt is None and done >= n // 3:
            rt = _realtime(slurm, seconds * 3)
        if done >= n:
            break
        time.sleep(max(0.0, opts.poll_seconds - (time.monotonic() - started)))
    makespan = time.monotonic() - t0
    assert len(queue.items(cfg, ("done",), limit=n + 1)) == n, "not every item is done"
    return makespan, _delay(slurm, rt) if rt is not None else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=1.0, help="run time of one batch job")
    parser.add_argument(
        "--max-pending",
        type=int,
        default=SHAPE.batch_cpus,
        help="the scheduler's pending allowance (PORTAL_SCHED_MAX_PENDING)",
    )
    args = parser.parse_args()
    if (why := localslurm.missing()) is not None:
        sys.exit(f"error: {why}")
    server = os.environ.get("PORTAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
    url = server.rsplit("/", 1)[0] + f"/obs_bench_sched_{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="obsportal-bench-sched-"))
    (tmp / "plugins").mkdir()
    (tmp / "plugins" / "bench_kind.py").write_text(PLUGIN.format(seconds=args.seconds))
    migrate.upgrade(url)
    cluster = localslurm.start(tmp / "slurm", SHAPE, localslurm.free_port(), localslurm.free_port())
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        cfg = settings.load(
            {
                **env,
                "PORTAL_DATABASE_URL": url,
                "PORTAL_PLUGINS_DIR": str(tmp / "plugins"),
                "PORTAL_DATA_DIR": str(tmp / "var"),
                "PORTAL_SCHED_SLURM_CONF": str(cluster.conf),
            }
        )
        slurm = Slurm(cluster.conf)
        print(
            f"{args.jobs} jobs of {args.seconds:g} s on {SHAPE.batch_cpus} batch CPUs "
            f"({SHAPE.realtime_cpus} held for real-time work); ideal makespan "
            f"{args.jobs * args.seconds / SHAPE.batch_cpus:.1f} s"
        )
        sched_s, sched_rt = scheduled(cfg, slurm, args.jobs, args.seconds, args.max_pending)
        print(
            f"scheduler (max pending {args.max_pending}): makespan {sched_s:.1f} s, "
            f"real-time job delayed {sched_rt:.0f} s"
        )
        sbatch_s, sbatch_rt = plain_sbatch(slurm, args.jobs, args.seconds)
        print(
            f"plain sbatch of everything:  makespan {sbatch_s:.1f} s, "
            f"real-time job delayed {sbatch_rt:.0f} s"
        )
    finally:
        localslurm.stop(cluster)
        db_engine.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"RESULT jobs={args.jobs} sched_makespan_s={sched_s:.1f} sbatch_makespan_s={sbatch_s:.1f} "
        f"makespan_ratio={sched_s / sbatch_s:.3f} realtime_delay_s={max(sched_rt, sbatch_rt):.0f}"
    )


if __name__ == "__main__":
    main()
