"""The scheduler against a real single-node Slurm (munged + slurmctld + slurmd, 8 CPUs of which
2 are held for real-time work): real-time work is never delayed or preempted, batch work fills
the free capacity, is requeued rather than lost, never scaled in while running, avoids drained
nodes, is reported when stuck, and is submitted once across a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from portal.errors import PortalError
from portal.readiness import http_ready
from portal.sched import metrics
from portal.sched import work as queue
from portal.sched.localslurm import BATCH, REALTIME
from portal.sched.scheduler import Scheduler, Step
from portal.sched.slurm import Job
from portal.stack import process
from tests.conftest import REPO, free_port
from tests.sched_fixtures import SHAPE, SlurmEnv, clean, opts, sched_env  # noqa: F401


@pytest.fixture
def env(sched_env: SlurmEnv) -> Iterator[SlurmEnv]:  # noqa: F811
    clean(sched_env)
    yield sched_env
    clean(sched_env)


def _until(sched: Scheduler, done: Callable[[Step], object], timeout: float = 60) -> Step:
    """Poll like the component does until ``done(step)``; the last step."""
    last: list[Step] = []

    def poll() -> bool:
        last.append(sched.step())
        return bool(done(last[-1]))

    assert process.wait_until(poll, timeout, interval=0.2), last[-1].reason if last else "no step"
    return last[-1]


def _ours(env: SlurmEnv, state: str) -> list[Job]:
    """Jobs of this test's work items in ``state`` (Slurm still lists earlier tests' jobs)."""
    ids = {i.id for i in queue.items(env.cfg)}
    return [j for j in env.slurm.jobs() if j.work_id in ids and j.state == state]


def test_batch_fills_exactly_the_free_capacity_and_realtime_starts_at_once(env: SlurmEnv) -> None:
    queue.enqueue(env.cfg, "t-long", [f"d{i}" for i in range(30)])  # more than the cluster
    sched = Scheduler(env.cfg, env.slurm, opts(env))
    _until(sched, lambda s: s.running == SHAPE.batch_cpus)
    running = _ours(env, "RUNNING")
    assert sum(j.cpus for j in running) == SHAPE.batch_cpus  # exactly the batch share
    assert all(j.partition == BATCH for j in running)
    assert len(_ours(env, "PENDING")) <= 2  # the pending allowance, not the whole backlog
    # a real-time job within the held share starts without waiting and preempts nothing
    rt = env.slurm.submit("rt-main", "sleep 2", REALTIME, SHAPE.realtime_cpus, 64)
    seen = []

    def finished() -> bool:
        job = next(j for j in env.slurm.jobs() if j.id == rt)
        seen.append((job.state, job.reason))
        sched.step()
        return job.state == "COMPLETED"

    assert process.wait_until(finished, 30, interval=0.1), seen[-1]
    waited = [r for s, r in seen if s == "PENDING"]
    assert waited == [] or set(waited) <= {"None"}, waited  # never Resources/Priority
    assert not [j for j in _ours(env, "RUNNING") + _ours(env, "PENDING") if j.requeued]
    assert {j.id for j in _ours(env, "RUNNING")} == {j.id for j in running}


def test_growing_realtime_needs_requeue_batch_jobs_that_complete_later(env: SlurmEnv) -> None:
    keys = [f"g{i}" for i in range(8)]
    queue.enqueue(env.cfg, "t-mid", keys)
    sched = Scheduler(env.cfg, env.slurm, opts(env))
    _until(sched, lambda s: s.running == SHAPE.batch_cpus)
    # real-time needs grow to the whole node: batch jobs must make room, by requeue
    rt = env.slurm.submit("rt-grown", "sleep 2", REALTIME, SHAPE.cpus, 64)
    assert process.wait_until(
        lambda: next(j for j in env.slurm.jobs() if j.id == rt).state == "RUNNING", 30
    )
    requeued = [j for j in _ours(env, "PENDING") if j.requeued]
    assert requeued, "no batch job was preempted"
    assert all(j.state == "PENDING" for j in requeued)
    _until(sched, lambda s: s.queued + s.pending + s.running == 0)
    done = queue.items(env.cfg, ("done",))
    assert sorted(i.key for i in done) == keys  # none lost, each completed
    assert not queue.items(env.cfg, ("failed",))
    assert all(i.attempts == 1 for i in done)  # requeued by Slurm, not resubmitted


def test_scale_in_cancels_only_pending_jobs_never_running_ones(env: SlurmEnv) -> None:
    queue.enqueue(env.cfg, "t-long", [f"s{i}" for i in range(20)])
    sched = Scheduler(env.cfg, env.slurm, opts(env, max_pending=4))
    _until(sched, lambda s: s.running == SHAPE.batch_cpus and s.pending == 4)
    running = {j.id for j in _ours(env, "RUNNING")}
    pending = {j.id for j in _ours(env, "PENDING")}
    sched.opts = opts(env, max_pending=4, max_jobs=1)  # want far fewer jobs than run now
    step = sched.step()
    assert len(step.cancelled) == 4
    assert {j.id for j in _ours(env, "RUNNING")} == running  # every running job kept
    cancelled = {
        j.id for j in env.slurm.jobs() if j.state == "CANCELLED" and j.id in running | pending
    }
    assert cancelled == pending
    assert len(queue.items(env.cfg, ("queued",))) == 20 - len(running)
    last = queue.recent_decisions(env.cfg, 5)
    assert any(d.decision == "scale-in" and "running jobs untouched" in d.reason for d in last)


def test_stabilization_window_delays_scale_in(env: SlurmEnv) -> None:
    queue.enqueue(env.cfg, "t-long", [f"w{i}" for i in range(12)])
    clock = [0.0]
    sched = Scheduler(
        env.cfg, env.slurm, opts(env, stabilization_seconds=60), clock=lambda: clock[0]
    )
    _until(sched, lambda s: s.running == SHAPE.batch_cpus and s.pending == 2)
    sched.opts = opts(env, stabilization_seconds=60, max_pending=0)
    clock[0] = 30.0
    assert sched.step().cancelled == []  # the higher want is still inside the window
    clock[0] = 120.0
    sched.step()  # the window now holds only the lower want
    assert len(sched.step().cancelled) == 2 or len(_ours(env, "PENDING")) == 0


def test_drained_node_takes_no_new_job(env: SlurmEnv) -> None:
    queue.enqueue(env.cfg, "t-long", [f"n{i}" for i in range(10)])
    sched = Scheduler(env.cfg, env.slurm, opts(env, max_pending=0))
    sched.opts = opts(env, max_pending=0, max_jobs=3)
    _until(sched, lambda s: s.running == 3)
    running = {j.id for j in _ours(env, "RUNNING")}
    env.slurm.drain(env.node, "disk replacement")
    sched.opts = opts(env, max_pending=0)
    step = sched.step()
    assert step.submitted == [] and env.node in step.reason
    assert step.free_cpus == 0
    node = env.slurm.nodes()[0]
    assert node.drained and node.reason == "disk replacement"
    assert {j.id for j in _ours(env, "RUNNING")} == running  # running work finishes there
    assert _ours(env, "PENDING") == []
    env.slurm.resume(env.node)
    after = _until(sched, lambda s: s.running == SHAPE.batch_cpus)
    assert after.free_cpus == 0


def test_failed_jobs_are_retried_up_to_the_kind_limit(env: SlurmEnv) -> None:
    queue.enqueue(env.cfg, "t-fail", ["f1"])
    sched = Scheduler(env.cfg, env.slurm, opts(env))
    _until(sched, lambda s: s.queued + s.pending + s.running == 0)
    (item,) = queue.items(env.cfg, ("failed",))
    assert item.attempts == 2 and "FAILED (exit 3)" in (item.last_error or "")
    kinds = [d.decision for d in queue.recent_decisions(env.cfg, 20)]
    assert kinds.count("retry") == 1 and kinds.count("give-up") == 1


def test_stuck_pending_job_raises_the_alert_with_slurms_reason(
    env: SlurmEnv, tmp_path: Path
) -> None:
    env.slurm.drain(env.node, "stuck test")
    queue.enqueue(env.cfg, "t-wait", ["p1"])
    sched = Scheduler(env.cfg, env.slurm, opts(env, min_jobs=1, max_pending=0))
    step = _until(sched, lambda s: bool(s.stuck), timeout=30)
    (stuck,) = step.stuck
    assert stuck.state == "pending" and stuck.kind == "t-wait"
    assert stuck.reason not in ("", "None")  # Slurm's own words, e.g. ReqNodeNotAvail
    exposition = metrics.text(env.cfg, step)
    line = next(ln for ln in exposition.splitlines() if ln.startswith("obs_sched_job_stuck"))
    assert f'reason="{stuck.reason}"' in line and 'state="pending"' in line
    decision = next(d for d in queue.recent_decisions(env.cfg, 10) if d.decision == "stuck")
    assert stuck.reason in decision.reason
    # what the component does each poll: push to a real Pushgateway, which Prometheus scrapes
    port = free_port()
    gateway = process.spawn(
        ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}"],
        tmp_path / "pushgateway.log",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert process.wait_until(lambda: http_ready(url), 20), process.tail(
            tmp_path / "pushgateway.log"
        )
        metrics.push(env.cfg.replace(pushgateway_url=url), step)
        scraped = httpx.get(f"{url}/metrics", timeout=10).text
    finally:
        assert process.stop(gateway)
    pushed = [ln for ln in scraped.splitlines() if ln.startswith("obs_sched_job_stuck_seconds{")]
    assert len(pushed) == 1 and f'reason="{stuck.reason}"' in pushed[0]
    assert 'job="obs-sched"' in pushed[0]
    # the real metric through the shipped rule: promtool says the alert fires with the reason
    series = line.split(" ")[0]
    test = {
        "rule_files": [str(REPO / "prometheus" / "rules" / "sched.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": "30x10"}],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "BatchJobStuck",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "kind": "t-wait",
                                    "work_id": str(stuck.work_id),
                                    "job_id": str(stuck.job_id),
                                    "state": "pending",
                                    "reason": stuck.reason,
                                },
                                "exp_annotations": {
                                    "summary": f"Batch job {stuck.job_id} (t-wait) stuck pending",
                                    "description": (
                                        f"Slurm job {stuck.job_id} of work item {stuck.work_id} "
                                        "(t-wait) has been pending 30s beyond its kind's limit; "
                                        f"Slurm says: {stuck.reason}."
                                    ),
                                    "runbook_url": "docs/runbooks.md#batchjobstuck",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "t.yml").write_text(yaml.safe_dump(test))
    proc = subprocess.run(
        ["promtool", "test", "rules", str(tmp_path / "t.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_restart_adopts_a_job_submitted_just_before_a_crash(env: SlurmEnv) -> None:
    """The crash window: the attempt is written and sbatch ran, the job id was never stored."""
    import sqlalchemy as sa

    from portal.db.engine import get_engine
    from portal.sched.tables import work

    queue.enqueue(env.cfg, "t-short", ["c1"])
    (item,) = queue.items(env.cfg)
    with get_engine(env.cfg.database_url).begin() as conn:
        conn.execute(
            work.update()
            .where(work.c.id == item.id)
            .values(state="submitted", attempts=1, submitted_at=sa.func.now())
        )
    job = env.slurm.submit(f"obs-work-{item.id}-1", "sleep 1", BATCH, 1, 64)
    sched = Scheduler(env.cfg, env.slurm, opts(env))  # "the restarted scheduler"
    _until(sched, lambda s: s.queued + s.pending + s.running == 0)
    (done,) = queue.items(env.cfg, ("done",))
    assert done.job_id == job and done.attempts == 1
    names = [j.name for j in env.slurm.jobs() if j.work_id == item.id]  # ids never repeat
    assert names == [f"obs-work-{item.id}-1"]  # submitted once
    assert any(d.decision == "adopt" for d in queue.recent_decisions(env.cfg, 10))


def test_kill_9_and_restart_submits_each_item_once(env: SlurmEnv) -> None:
    keys = [f"k{i}" for i in range(14)]
    queue.enqueue(env.cfg, "t-short", keys)
    run_env = {
        **os.environ,
        "PORTAL_DATABASE_URL": env.cfg.database_url,
        "PORTAL_PLUGINS_DIR": str(env.cfg.plugins_dir),
        "PORTAL_SCHED_SLURM_CONF": str(env.cluster.conf),
        "PORTAL_SCHED_POLL_SECONDS": "0.2",
    }
    log = env.cluster.root / "sched-run.log"
    cmd = [sys.executable, "-m", "portal", "sched", "run"]
    first = process.spawn(cmd, log, env=run_env)
    try:
        assert process.wait_until(lambda: len(_ours(env, "RUNNING")) > 0, 30), process.tail(log)
    finally:
        os.kill(first, signal.SIGKILL)
        process.wait_until(lambda: not process.alive(first), 10)
    second = process.spawn(cmd, log, env=run_env)
    try:
        assert process.wait_until(lambda: len(queue.items(env.cfg, ("done",))) == len(keys), 60), (
            process.tail(log)
        )
    finally:
        assert process.stop(second)
    ids = {i.id for i in queue.items(env.cfg)}
    jobs = [j for j in env.slurm.jobs() if j.work_id in ids]
    per_item: dict[int, int] = {}
    for j in jobs:
        assert j.work_id is not None
        per_item[j.work_id] = per_item.get(j.work_id, 0) + 1
    assert sorted(per_item.values()) == [1] * len(keys), per_item  # no double submission
    assert all(j.state == "COMPLETED" for j in jobs)


def test_a_host_drained_by_operations_is_drained_in_slurm_and_resumed_after(
    env: SlurmEnv,
) -> None:
    import sqlalchemy as sa

    from portal.db.engine import get_engine

    ops = pytest.importorskip("portal.ops.tables")
    queue.enqueue(env.cfg, "t-long", [f"o{i}" for i in range(4)])
    sched = Scheduler(env.cfg, env.slurm, opts(env, max_pending=0))
    with get_engine(env.cfg.database_url).begin() as conn:  # what `portal ops drain` records
        conn.execute(
            ops.ops_drains.insert().values(
                host=env.node,
                actor="cli:ops",
                reason="PSU swap",
                drained_at=sa.func.now(),
                forced=False,
            )
        )
    step = sched.step()
    node = env.slurm.nodes()[0]
    assert node.drained and node.reason == "obsportal ops drain: PSU swap"
    assert step.submitted == [] and step.free_cpus == 0
    with get_engine(env.cfg.database_url).begin() as conn:
        conn.execute(ops.ops_drains.delete())
    _until(sched, lambda s: s.running == 4)
    assert not env.slurm.nodes()[0].drained
    found = [d.decision for d in queue.recent_decisions(env.cfg, 20)]
    assert "drain" in found and "resume" in found
    env.slurm.drain(env.node, "an operator's own drain")
    sched.step()
    assert env.slurm.nodes()[0].reason == "an operator's own drain"  # not undone


def test_an_operations_drain_waits_for_running_batch_work_and_a_reboot_refuses_meanwhile(
    env: SlurmEnv,
) -> None:
    """Through the operations actions and their worker: a drain lists the batch job still
    running on the node; a reboot then refuses before any command; a drain with a batch wait
    ends only when the job has finished."""
    import threading

    import sqlalchemy as sa

    from portal.auth.identity import Identity
    from portal.db.engine import get_engine
    from portal.inventory import registry
    from portal.ops import runs
    from portal.ops.tables import ops_drains
    from portal.ops.worker import Worker

    admin = Identity("tester", "user", "admin", "127.0.0.1", "req-sched")
    registry.add_host(env.cfg, env.node, "compute")  # an ops target; no SSH is needed here
    queue.enqueue(env.cfg, "t-long", ["drain-wait"])
    sched = Scheduler(env.cfg, env.slurm, opts(env, max_pending=0))
    _until(sched, lambda s: s.running == 1)
    job = _ours(env, "RUNNING")[0]
    worker = Worker(env.cfg, threads=2)
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()

    def finished(run_id: int) -> runs.Run:
        assert process.wait_until(lambda: runs.get(env.cfg, run_id).finished, 60)
        return runs.get(env.cfg, run_id)

    def note(run: runs.Run) -> str:
        return next(s.detail for s in run.steps if s.name == "batch work")

    try:
        drained = finished(runs.request(env.cfg, admin, "drain", [env.node], {}, "PSU swap"))
        assert drained.state == "succeeded", drained
        assert f"1 still running, none will start: Slurm job {job.id} " in note(drained)
        reboot = finished(runs.request(env.cfg, admin, "reboot", [env.node], {}, "PSU swap"))
        assert reboot.state == "failed" and "1 batch job(s) still running" in (reboot.error or "")
        assert [s.name for s in reboot.steps] == ["batch work"]  # no command was sent
        waiting = runs.request(
            env.cfg, admin, "drain", [env.node], {"batch_wait": "120s"}, "PSU swap"
        )

        def waits() -> bool:
            steps = runs.get(env.cfg, waiting).steps
            return any(s.name == "batch work" and s.state == "running" for s in steps)

        assert process.wait_until(waits, 60), runs.get(env.cfg, waiting)
        assert not runs.get(env.cfg, waiting).finished
        env.slurm.cancel(job.id)  # the job ends
        done = finished(waiting)
        assert done.state == "succeeded", done
        assert note(done).endswith("every running batch job finished")
        registry.add_host(env.cfg, "st-not-in-slurm", "storage")
        other = runs.request(env.cfg, admin, "drain", ["st-not-in-slurm"], {}, "disk swap")
        assert note(finished(other)).endswith("no batch job running")  # not a Slurm node
        with pytest.raises(PortalError, match="batch_wait"):
            runs.request(env.cfg, admin, "drain", [env.node], {"batch_wait": "soon"}, "x")
    finally:
        worker.stop.set()
        thread.join(timeout=60)
        with get_engine(env.cfg.database_url).begin() as conn:
            conn.execute(sa.delete(ops_drains))
