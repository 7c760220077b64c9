"""A real single-node Slurm (munged + slurmctld + slurmd) and a database of the scheduling
tests' own, started once per module and stopped by PID."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from portal import plugins
from portal.db import engine as db_engine
from portal.db import migrate
from portal.sched import localslurm
from portal.sched.options import Options, options
from portal.sched.slurm import Slurm
from portal.settings import Settings
from portal.stack import process
from tests.conftest import free_port, shared_tmpdir

#: Work kinds of the tests, registered through a one-file plugin (the real hook path).
KINDS_PLUGIN = """
from portal import hookimpl
from portal.hookspecs import WorkKind


@hookimpl
def register_work_kinds():
    return [
        WorkKind("t-short", "a 1 s job", command="sleep 1 # {key}", memory_mb=64),
        WorkKind("t-mid", "a 3 s job", command="sleep 3 # {key}", memory_mb=64),
        WorkKind("t-long", "a 60 s job", command="sleep 60 # {key}", memory_mb=64),
        WorkKind("t-fail", "a job that fails", command="exit 3 # {key}", memory_mb=64,
                 max_attempts=2),
        WorkKind("t-wait", "stuck when pending past 0.6 s", command="sleep 1 # {key}",
                 memory_mb=64, max_pending_minutes=0.01),
    ]
"""

SHAPE = localslurm.Shape(cpus=8, memory_mb=4096, realtime_cpus=2)


@dataclass
class SlurmEnv:
    cfg: Settings
    slurm: Slurm
    cluster: localslurm.Cluster
    node: str


@pytest.fixture(scope="module")
def sched_env(pg_server: str, cfg: Settings) -> Iterator[SlurmEnv]:
    why = localslurm.missing()
    if why is not None:
        pytest.skip(why)
    tmp = shared_tmpdir("obsportal-sched-")
    url = f"{pg_server}/obs_sched_{uuid.uuid4().hex[:8]}"
    migrate.upgrade(url)
    (tmp / "plugins").mkdir()
    (tmp / "plugins" / "sched_test_kinds.py").write_text(KINDS_PLUGIN)
    cluster = localslurm.start(tmp / "slurm", SHAPE, free_port(), free_port())
    extra = {**cfg.extra, "PORTAL_SCHED_SLURM_CONF": cluster.conf}
    here = cfg.replace(database_url=url, plugins_dir=tmp / "plugins", extra=extra)
    try:
        yield SlurmEnv(here, Slurm(cluster.conf), cluster, SHAPE.node_name)
    finally:
        assert localslurm.stop(cluster)
        plugins.reset()
        db_engine.drop_database(url)
        process.wait_until(lambda: False, 0)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def clean(env: SlurmEnv) -> None:
    """No job left in Slurm, an empty queue, the node in service."""
    jobs = [j for j in env.slurm.jobs() if j.active]
    for job in jobs:
        env.slurm.cancel(job.id)
    assert process.wait_until(lambda: not [j for j in env.slurm.jobs() if j.active], 30)
    node = env.slurm.nodes()[0]
    if "DRAIN" in node.flags or "drain" in node.state:
        env.slurm.resume(env.node)
    with db_engine.get_engine(env.cfg.database_url).begin() as conn:
        conn.execute(sa.text("TRUNCATE sched_work, sched_decisions"))


def opts(env: SlurmEnv, **changes: Any) -> Options:
    """Scheduler options for tests: no cooldown or window unless a test sets them."""
    import dataclasses

    base = options(env.cfg)
    base = dataclasses.replace(base, cooldown_seconds=0, stabilization_seconds=0, max_pending=2)
    return dataclasses.replace(base, **changes)


def workdir(env: SlurmEnv) -> Path:
    return env.cluster.root
