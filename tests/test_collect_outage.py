"""Nothing lost, nothing twice: the host collector across a PostgreSQL outage and ``kill -9``.

The collector runs against a throwaway PostgreSQL that the test starts, stops and restarts.
It appends ``<sample time> <rows>`` to a count file after each sampling is durably spooled;
at the end the table must hold exactly those rows, each once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from portal.db import engine as db_engine
from portal.db import migrate
from portal.stack import postgres, process
from portal.stack.process import wait_until
from tests.conftest import REPO, free_port, portal_cmd, shared_tmpdir

HOST = "outage-host"


@dataclass
class Rig:
    url: str
    data: Path
    log: Path
    var: Path
    counts: Path
    port: int

    def start_collector(self) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PORTAL_DATABASE_URL": self.url,
            "PORTAL_DATA_DIR": str(self.var),
            "PORTAL_WRITE_FLUSH_SECONDS": "0.1",
        }
        cmd = portal_cmd(
            "collect", "host", "--host", HOST, "--port", str(self.port), "--bind", "127.0.0.1",
            "--interval", "0.2", "--no-register", "--count-file", str(self.counts),
        )  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
        assert wait_until(lambda: self.spool_bytes() is not None, 30), "collector did not start"
        return proc

    def produced(self) -> tuple[int, int]:
        """(samplings, rows) acknowledged so far; a torn last line was never acknowledged."""
        lines = [
            ln for ln in self.counts.read_text().splitlines(keepends=True) if ln.endswith("\n")
        ]
        return len(lines), sum(int(ln.split()[1]) for ln in lines)

    def stored(self) -> tuple[int, int]:
        with psycopg.connect(db_engine.libpq_dsn(self.url)) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT (name, host, component, labels, time)) "
                "FROM metric_samples WHERE host = %s",
                (HOST,),
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def spool_bytes(self) -> float | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith('portal_spool_bytes{writer="host-collector"}'):
                return float(line.split()[-1])
        return None

    def samplings_grow_by(self, n: int, timeout: float = 60) -> bool:
        target = self.produced()[0] + n
        return wait_until(lambda: self.produced()[0] >= target, timeout, interval=0.1)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    tmp = shared_tmpdir("obsportal-outage-")
    port = free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/outage"
    r = Rig(url, tmp / "pg", tmp / "pg.log", tmp / "var", tmp / "counts.txt", free_port())
    postgres.start(url, r.data, r.log)
    try:
        migrate.upgrade(url)
        yield r
    finally:
        db_engine.dispose_all()
        postgres.stop(r.data)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop_gracefully(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_database_outage_loses_nothing(rig: Rig) -> None:
    proc = rig.start_collector()
    try:
        assert rig.samplings_grow_by(3)
        postgres.stop(rig.data)  # the outage
        assert rig.samplings_grow_by(10)  # sampling goes on meanwhile ...
        assert wait_until(lambda: (rig.spool_bytes() or 0) > 0, 30)  # ... into the spool
        postgres.start(rig.url, rig.data, rig.log)
        assert wait_until(lambda: rig.spool_bytes() == 0, 60, interval=0.2), "spool not drained"
    finally:
        if process.alive(proc.pid):
            _stop_gracefully(proc)
    samplings, rows = rig.produced()
    assert samplings >= 13 and rows > 0
    assert rig.stored() == (rows, rows)


def test_kill_9_mid_replay_then_restart_loses_nothing_and_duplicates_nothing(rig: Rig) -> None:
    proc = rig.start_collector()
    try:
        assert rig.samplings_grow_by(2)
        proc.send_signal(signal.SIGSTOP)  # frozen: the count below cannot move until replay
        before = rig.stored()[0]
        postgres.stop(rig.data)
        proc.send_signal(signal.SIGCONT)
        assert rig.samplings_grow_by(30)  # a backlog to replay, one transaction per sampling
        postgres.start(rig.url, rig.data, rig.log)
        # kill -9 as soon as the replay has committed something: mid-flush
        assert wait_until(lambda: rig.stored()[0] > before, 60, interval=0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = rig.produced()
        proc = rig.start_collector()  # same data dir: replays what the killed one spooled
        assert rig.samplings_grow_by(3)
        assert wait_until(lambda: rig.spool_bytes() == 0, 60, interval=0.2), "spool not drained"
    finally:
        if process.alive(proc.pid):
            _stop_gracefully(proc)
    samplings, rows = rig.produced()
    assert rows > killed_at[1] > 0
    assert rig.stored() == (rows, rows)
