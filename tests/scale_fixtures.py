"""A real primary + streaming replica pair from the system's PostgreSQL binaries.

The primary is a private cluster (``portal.stack.postgres.start``: initdb as ``postgres``, own
port and socket dir); the standby is ``pg_basebackup -R`` of it, started on a port of its own.
Both are stopped through ``pg_ctl`` (by their data dirs) at the end.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from portal.db import engine as db_engine
from portal.stack import postgres, process
from tests.conftest import free_port, shared_tmpdir


@dataclass
class ReplicaPair:
    primary: str  # server URLs, without a database
    replica: str
    primary_data: Path
    replica_data: Path

    def replayed(self, database: str) -> bool:
        """The replica has replayed everything the primary has written so far."""
        with psycopg.connect(f"{self.primary}/postgres", autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        want = row[0]
        try:
            with psycopg.connect(f"{self.replica}/{database}", autocommit=True) as conn:
                got = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (want,)
                ).fetchone()
        except psycopg.OperationalError:  # the database itself is not replayed yet
            return False
        return bool(got and got[0])


def start_pair(tmp: Path) -> ReplicaPair:
    """Primary, then a standby cloned from it; both answer when this returns."""
    bins = postgres.bin_dir()
    user = postgres.run_as()
    p_port, r_port = free_port(), free_port()
    primary = f"postgresql://postgres@127.0.0.1:{p_port}"
    replica = f"postgresql://postgres@127.0.0.1:{r_port}"
    p_data, r_data = tmp / "primary", tmp / "replica"
    postgres.start(f"{primary}/postgres", p_data, tmp / "primary.log", bins)
    try:
        r_data.mkdir(mode=0o700)
        if user:
            shutil.chown(r_data, user, user)
        result = subprocess.run(
            [
                str(bins / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(p_port),
                "-U",
                "postgres",
                "-D",
                str(r_data),
                "-R",  # standby.signal + primary_conninfo: a streaming replica
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            user=user,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        postgres.start(f"{replica}/postgres", r_data, tmp / "replica.log", bins)
    except BaseException:
        postgres.stop(r_data, bins)
        postgres.stop(p_data, bins)
        raise
    return ReplicaPair(primary, replica, p_data, r_data)


@pytest.fixture(scope="module")
def replica_pair() -> Iterator[ReplicaPair]:
    tmp = shared_tmpdir("portal-replica-")
    pair = start_pair(tmp)
    try:
        yield pair
    finally:
        db_engine.dispose_all()
        postgres.stop(pair.replica_data)
        postgres.stop(pair.primary_data)
        for data in (pair.replica_data, pair.primary_data):
            pid = postgres.pid_of(data)
            assert pid is None or not process.alive(pid)
        shutil.rmtree(tmp, ignore_errors=True)
