"""``portal sched`` from the command line against a real single-node Slurm: the config fragment,
the real-time check, enqueue/queue/decisions/status, drain and resume, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from portal.inventory import registry
from portal.sched import work as queue
from tests.conftest import run_portal
from tests.sched_fixtures import SHAPE, SlurmEnv, clean, sched_env  # noqa: F401


@pytest.fixture
def env(sched_env: SlurmEnv) -> Iterator[SlurmEnv]:  # noqa: F811
    clean(sched_env)
    yield sched_env
    clean(sched_env)


def _portal(env: SlurmEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return run_portal(
        *args,
        env={
            "PORTAL_DATABASE_URL": env.cfg.database_url,
            "PORTAL_PLUGINS_DIR": str(env.cfg.plugins_dir),
            "PORTAL_SCHED_SLURM_CONF": str(env.cluster.conf),
            "PORTAL_DATA_DIR": os.environ["PORTAL_DATA_DIR"],
        },
    )


def test_config_prints_the_site_fragment() -> None:
    out = run_portal(
        "sched",
        "config",
        "--cpus",
        "16",
        "--realtime-cpus",
        "3",
        "--nodes",
        "cn[01-04]",
        check=True,
    ).stdout
    assert "PreemptType=preempt/partition_prio" in out
    assert "PartitionName=realtime Nodes=cn[01-04] PriorityTier=100" in out
    assert "PreemptMode=OFF" in out.split("PartitionName=batch")[0].split("realtime")[1]
    batch = next(ln for ln in out.splitlines() if ln.startswith("PartitionName=batch"))
    assert "PreemptMode=REQUEUE" in batch and "MaxCPUsPerNode=13" in batch
    bad = run_portal("sched", "config", "--cpus", "4", "--realtime-cpus", "9")
    assert bad.returncode == 1 and bad.stderr.startswith("error: real-time CPUs 9")


def test_check_reports_realtime_needs_beyond_the_share(env: SlurmEnv) -> None:
    cfg = env.cfg
    registry.add_host(cfg, "rt01")
    registry.add_component(cfg, "rt01", "l1-beam", "real-time", labels={"cores": "1"})
    ok = _portal(env, "sched", "check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"real-time share: {SHAPE.realtime_cpus} of {SHAPE.cpus} CPUs" in ok.stdout
    registry.add_component(cfg, "rt01", "l1-dedisp", "real-time", process_match="dedisp")
    declared = _portal(
        env, "sched", "declare", "rt01", "l1-dedisp", "--cores", "4", "--memory-mb", "512"
    )
    assert declared.returncode == 0, declared.stderr
    (comp,) = [c for c in registry.list_components(cfg, "rt01") if c.name == "l1-dedisp"]
    assert comp.labels == {"cores": "4", "memory_mb": "512"} and comp.process_match == "dedisp"
    over = _portal(env, "sched", "check")
    assert over.returncode == 1
    assert "declared real-time needs (5 cores) exceed the real-time share (2 CPUs)" in over.stdout
    registry.remove_host(cfg, "rt01")


def test_enqueue_queue_decisions_status_drain_resume(env: SlurmEnv) -> None:
    out = _portal(env, "sched", "enqueue", "hhat-daily", "2026-11-01", "2026-11-02")
    assert out.returncode == 0 and "2 of 2 hhat-daily item(s) queued" in out.stdout
    again = _portal(env, "sched", "enqueue", "hhat-daily", "2026-11-01")
    assert "0 of 1" in again.stdout  # idempotent
    listed = _portal(env, "sched", "queue").stdout
    assert listed.count("hhat-daily") == 2 and "queued" in listed
    status = _portal(env, "sched", "status")
    assert status.returncode == 0, status.stderr
    assert "work: queued 2" in status.stdout and "nothing finished" in status.stdout
    assert f"node {env.node}: idle" in status.stdout
    drained = _portal(env, "sched", "drain", env.node, "--reason", "fan swap")
    assert drained.returncode == 0, drained.stderr
    node = env.slurm.nodes()[0]
    assert "DRAIN" in node.flags and node.reason == "fan swap"
    assert _portal(env, "sched", "resume", env.node).returncode == 0
    assert "DRAIN" not in env.slurm.nodes()[0].flags
    from portal.auth import audit

    actions = [e.action for e in audit.query(env.cfg.database_url, action="sched.*")]
    assert {"sched.enqueue", "sched.drain", "sched.resume"} <= set(actions)
    assert len(queue.items(env.cfg)) == 2


def test_bad_input_is_one_line(env: SlurmEnv) -> None:
    for args, start in [
        (("enqueue", "no-such-kind", "x"), "error: work kind 'no-such-kind' is unknown"),
        (("enqueue", "hhat-daily", "a b"), "error: work key 'a b' is invalid"),
        (("queue", "--state", "lost"), "error: state 'lost' is not one of"),
        (("drain", "nope", "--reason", "x"), "error: `scontrol update` failed"),
        (("cancel", "999999"), "error: work item 999999 is not queued"),
        (("declare", "nohost", "x", "--cores", "1"), "error: component 'x' on host 'nohost'"),
    ]:
        res = _portal(env, "sched", *args)
        assert res.returncode != 0 and res.stderr.startswith(start), (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_scheduling_page_shows_capacity_queue_forecast_and_decisions(env: SlurmEnv) -> None:
    import dash

    from portal.sched.scheduler import Scheduler
    from portal.web.app import create_app
    from tests.sched_fixtures import opts

    queue.enqueue(env.cfg, "t-long", ["p1", "p2"])
    Scheduler(env.cfg, env.slurm, opts(env)).step()
    app = create_app(env.cfg)
    page = next(p for p in dash.page_registry.values() if p["path"] == "/scheduling")
    with app.test_request_context("/scheduling"):
        text = json.dumps(page["layout"](time_range=None).to_plotly_json(), default=str)
    assert f"Real-time share: {SHAPE.realtime_cpus} CPUs held" in text
    assert env.node in text and "t-long" in text
    assert "Forecast: 2 items" in text
    assert "scale-out" in text and "submitted 2" in text
    bare = create_app(env.cfg.replace(extra={**env.cfg.extra, "PORTAL_SCHED_SLURM_CONF": None}))
    with bare.test_request_context("/scheduling"):
        text = json.dumps(page["layout"](time_range=None).to_plotly_json(), default=str)
    assert "Slurm" in text and "t-long" in text  # a notice about Slurm, the queue still shown


def test_forecast_divides_the_backlog_by_the_measured_throughput(env: SlurmEnv) -> None:
    import datetime as dt

    import sqlalchemy as sa

    from portal.db.engine import get_engine
    from portal.sched import metrics
    from portal.sched.tables import work

    assert metrics.forecast(env.cfg).line() == "no backlog"
    queue.enqueue(env.cfg, "hhat-daily", [f"2026-10-{d:02d}" for d in range(1, 10)])
    now = dt.datetime.now(dt.UTC)
    first = now - dt.timedelta(minutes=30)
    with get_engine(env.cfg.database_url).begin() as conn:
        ids = [r.id for r in conn.execute(sa.select(work.c.id).order_by(work.c.id))]
        conn.execute(
            work.update().where(work.c.id.in_(ids[:6])).values(state="done", finished_at=first)
        )
    fc = metrics.forecast(env.cfg, now=now)
    assert fc.open_items == 3 and fc.open_pointing_days == 3.0
    assert round(fc.done_per_hour) == 12  # 6 finished within the half hour since the first
    assert fc.hours is not None and round(fc.hours, 2) == 0.25
    assert "3 items (3 pointing-days) open" in fc.line() and "catches up in" in fc.line()


def test_queue_order_is_kind_priority_then_age(env: SlurmEnv) -> None:
    import datetime as dt

    import sqlalchemy as sa

    from portal.db.engine import get_engine
    from portal.sched.tables import work

    queue.enqueue(env.cfg, "hhat-monthly", ["2026-01"])  # priority 10
    queue.enqueue(env.cfg, "hhat-daily", ["2026-11-02"])  # priority 20
    queue.enqueue(env.cfg, "hhat-check", ["2026-11-01"])  # priority 30
    now = dt.datetime.now(dt.UTC)
    with get_engine(env.cfg.database_url).begin() as conn:
        for kind, days in (("hhat-monthly", 2), ("hhat-daily", 1), ("hhat-check", 0)):
            conn.execute(
                work.update()
                .where(work.c.kind == kind)
                .values(enqueued_at=now - dt.timedelta(days=days))
            )
        assert conn.execute(sa.select(sa.func.count()).select_from(work)).scalar() == 3
    items = queue.items(env.cfg, ("queued",))
    by_kind = [i.kind for i in queue.ordered(env.cfg, items, now, age_weight=0.0)]
    assert by_kind == ["hhat-check", "hhat-daily", "hhat-monthly"]
    # 1 point an hour: 10 + 48 > 20 + 24 > 30 + 0, the oldest work comes first
    by_age = [i.kind for i in queue.ordered(env.cfg, items, now, age_weight=1.0)]
    assert by_age == ["hhat-monthly", "hhat-daily", "hhat-check"]
