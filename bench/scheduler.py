#!/usr/bin/env python3
"""Backlog-driven scheduling vs plain ``sbatch`` of everything, on a real single-node Slurm.

Self-contained: starts its own munged + slurmctld + slurmd (8 CPUs declared, 2 held for
real-time work, the rest the batch partition) and a throwaway database on PORTAL_DATABASE_URL's
server (both removed at the end). The same ``--jobs`` short batch jobs (``sleep --seconds``) run
twice in the same run: once submitted all at once with plain ``sbatch`` (the baseline), once fed
by the portal's scheduler from its work queue. In each phase one real-time job is submitted
when a third of the batch work is done and polled every 20 ms until it runs; its delay is its
start latency beyond the longest of 5 on the idle cluster (a batch-submitted job starts at
Slurm's next scheduling pass, up to about a second later, even with nothing else to run).
``realtime_delay_s`` is that delay under the scheduler; the plain-sbatch one is printed as the
baseline. Last line:
``RESULT jobs=N sched_makespan_s=... sbatch_makespan_s=... makespan_ratio=... realtime_delay_s=...``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import threading
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
from portal.sched.slurm import Job, Slurm  # noqa: E402
from portal.stack import process  # noqa: E402

PLUGIN = """
from portal import hookimpl
from portal.hookspecs import WorkKind


@hookimpl
def register_work_kinds():
    return [WorkKind("bench", "a short batch job", command="sleep {seconds} # {{key}}",
                     memory_mb=64)]
"""
SHAPE = localslurm.Shape(cpus=8, memory_mb=8192, realtime_cpus=2)


class Probe(threading.Thread):
    """Submit one real-time job and poll it until it runs: its start latency (wall clock), the
    pending reasons Slurm gave meanwhile (Resources, Priority, ...), whether it was preempted."""

    def __init__(self, slurm: Slurm, seconds: float) -> None:
        super().__init__(daemon=True)
        self.slurm, self.seconds = slurm, seconds
        self.latency = 0.0
        self.reasons: set[str] = set()
        self.job_id = 0

    def run(self) -> None:
        t0 = time.monotonic()
        self.job_id = self.slurm.submit(
            "rt-bench", f"sleep {self.seconds}", localslurm.REALTIME, SHAPE.realtime_cpus, 64
        )
        while True:
            job = next(j for j in self.slurm.jobs() if j.id == self.job_id)
            if job.state != "PENDING":
                break
            if job.reason not in ("None", ""):
                self.reasons.add(job.reason)
            time.sleep(0.02)
        self.latency = time.monotonic() - t0

    def requeued(self) -> int:
        return next(j for j in self.slurm.jobs() if j.id == self.job_id).requeued


def idle_latency(slurm: Slurm, runs: int = 5) -> float:
    """The longest start latency of the real-time job on the idle cluster: Slurm's own pace (a
    batch-submitted job starts at the next scheduling pass, up to about a second later)."""
    seen = []
    for _ in range(runs):
        probe = Probe(slurm, 0.1)
        probe.run()
        seen.append(probe.latency)
    process.wait_until(lambda: not [j for j in slurm.jobs() if j.active], 30)
    return max(seen)


def _makespan(jobs: list[Job], wall0: float) -> float:
    """From the first submission to the last end Slurm recorded (the same clock for both)."""
    return max(j.ended.timestamp() for j in jobs if j.ended) - wall0


def plain_sbatch(slurm: Slurm, n: int, seconds: float) -> tuple[float, Probe]:
    """Submit all ``n`` at once; (makespan, the real-time probe)."""
    wall0 = time.time()
    ids = {
        slurm.submit(f"plain-{i}", f"sleep {seconds}", localslurm.BATCH, 1, 64) for i in range(n)
    }
    rt = Probe(slurm, seconds * 3)
    while True:
        jobs = [j for j in slurm.jobs() if j.id in ids]
        done = sum(not j.active for j in jobs)
        if not rt.is_alive() and not rt.job_id and done >= n // 3:
            rt.start()
        if done == n:
            break
        time.sleep(0.05)
    rt.join()
    jobs = [j for j in slurm.jobs() if j.id in ids]
    assert all(j.state == "COMPLETED" for j in jobs)
    return _makespan(jobs, wall0), rt


def scheduled(
    cfg: settings.Settings, slurm: Slurm, n: int, seconds: float, max_pending: int
) -> tuple[float, Probe]:
    """Enqueue ``n`` items and let the scheduler run them; (makespan, the real-time probe)."""
    opts = dataclasses.replace(
        options(cfg),
        poll_seconds=0.2,
        max_pending=max_pending,
        max_jobs=100000,
        cooldown_seconds=30,
        stabilization_seconds=60,
    )
    wall0 = time.time()
    queue.enqueue(cfg, "bench", [f"k{i}" for i in range(n)])
    sched = Scheduler(cfg, slurm, opts)
    rt = Probe(slurm, seconds * 3)
    while True:
        started = time.monotonic()
        step = sched.step()
        done = n - (step.queued + step.pending + step.running)
        if not rt.is_alive() and not rt.job_id and done >= n // 3:
            rt.start()
        if done >= n:
            break
        time.sleep(max(0.0, opts.poll_seconds - (time.monotonic() - started)))
    rt.join()
    items = queue.items(cfg, ("done",), limit=n + 1)
    assert len(items) == n, "not every item is done"
    ids = {i.job_id for i in items}
    return _makespan([j for j in slurm.jobs() if j.id in ids], wall0), rt


def _delay(rt: Probe, idle: float) -> float:
    """Start latency beyond the idle cluster's worst (other jobs' doing), in seconds."""
    return max(0.0, rt.latency - idle)


def _describe(rt: Probe, idle: float) -> str:
    waits = ", ".join(sorted(rt.reasons)) or "none"
    return (
        f"real-time job started after {rt.latency:.2f} s (pending reasons: {waits}), delayed "
        f"{_delay(rt, idle):.2f} s, preempted {rt.requeued()} times"
    )


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
        idle = idle_latency(slurm)
        print(
            f"real-time job start latency on the idle cluster: up to {idle:.2f} s "
            "(Slurm's scheduling pass); a delay is what comes on top"
        )
        sched_s, sched_rt = scheduled(cfg, slurm, args.jobs, args.seconds, args.max_pending)
        print(
            f"scheduler (max pending {args.max_pending}): makespan {sched_s:.1f} s; "
            f"{_describe(sched_rt, idle)}"
        )
        sbatch_s, sbatch_rt = plain_sbatch(slurm, args.jobs, args.seconds)
        print(
            f"plain sbatch of everything: makespan {sbatch_s:.1f} s; {_describe(sbatch_rt, idle)}"
        )
    finally:
        localslurm.stop(cluster)
        db_engine.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"RESULT jobs={args.jobs} sched_makespan_s={sched_s:.1f} sbatch_makespan_s={sbatch_s:.1f} "
        f"makespan_ratio={sched_s / sbatch_s:.3f} "
        f"realtime_delay_s={_delay(sched_rt, idle):.2f}"
    )


if __name__ == "__main__":
    main()
