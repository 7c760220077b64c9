"""Power-cut drill: SIGKILL every process of a loaded local stack, start it again the normal way.

``portal run --no-demo`` on its own ports and data dir, with a private PostgreSQL (the
configured URL does not answer, so the stack starts one in the data dir), takes load: events,
alert notifications through the web API, log lines the shipper tails, and metric samples from
a durable write-path writer. Then every process (the run, its components, PostgreSQL with its
backends, Prometheus, Pushgateway, Alertmanager, the writer) gets SIGKILL at once. A torn
record is left at the end of each spool (a write the cut interrupted). The same command starts
it all again with no manual step (stale pid files, postmaster.pid, torn spools), and every
acknowledged write is there, once, and the stack reports healthy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest

from portal.db import engine as db_engine
from portal.stack import postgres, process
from tests.conftest import REPO, free_port, portal_cmd, run_portal, shared_tmpdir

DEADLINE = 120.0  # for a hang, not a speed claim
WRITER = """
import sys, time
from datetime import UTC, datetime
from portal import settings
from portal.db.writer import WritePath
cfg = settings.get()
path = WritePath.from_settings(cfg, "metric_samples", name="drill", durable=True)
start = int(sys.argv[1])
for n in range(start, start + 1_000_000):
    row = (datetime.now(UTC), "drill", "writer", "drill_seq", "{}", float(n))
    path.write_many([row])  # durable: on disk (fsync'd) when this returns
    print(n, flush=True)  # acknowledged
    time.sleep(0.002)
"""


def _runs_in(proc: psutil.Process, folder: Path) -> bool:
    try:
        return Path(proc.cwd()) == folder
    except (psutil.Error, OSError):
        return False


class Drill:
    """The stack's environment, its processes and what was acknowledged to the load."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.url = f"postgresql://postgres@127.0.0.1:{free_port()}/obsportal"
        self.web = f"127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "PORTAL_DATA_DIR": str(tmp),
            "PORTAL_DATABASE_URL": self.url,
            "PORTAL_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
            "PORTAL_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
            "PORTAL_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
            "PORTAL_WEB_BIND": self.web,
            "PORTAL_COLLECTOR_PORT": str(free_port()),
            "PORTAL_WEB_WORKERS": "1",
            "PORTAL_ANONYMOUS": "viewer",
            "PORTAL_HOST_NAME": "drill-host",
            "PORTAL_LOG_LEVEL": "INFO",
        }
        self.run: subprocess.Popen[bytes] | None = None
        self.writer: subprocess.Popen[bytes] | None = None
        self.events: list[int] = []
        self.alerts: list[int] = []
        self.lines: list[str] = []
        self.samples: set[int] = set()
        self.stop = threading.Event()

    # -- the stack ---------------------------------------------------------------------------
    def start(self) -> None:
        """``portal run --no-demo`` (what `make run` runs), until the web answers healthy."""
        out = open(self.tmp / f"run-{int(time.time() * 1000)}.out", "ab")  # noqa: SIM115
        self.run = subprocess.Popen(
            portal_cmd("run", "--no-demo"),
            env=self.env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        if not process.wait_until(self.healthy, DEADLINE, interval=0.5):
            raise AssertionError(f"the stack did not come up healthy:\n{self.output()}")

    def healthy(self) -> bool:
        assert self.run is not None
        if self.run.poll() is not None:
            raise AssertionError(f"portal run exited ({self.run.returncode}):\n{self.output()}")
        try:
            health = httpx.get(f"http://{self.web}/healthz", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        return bool(health.get("status") == "ok")

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("run-*.out"))

    def start_writer(self, first: int) -> None:
        self.writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(first)],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=open(self.tmp / "writer.err", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        threading.Thread(target=self._acks, args=(self.writer,), daemon=True).start()

    def _acks(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.samples.add(int(line))

    def every_pid(self) -> list[psutil.Process]:
        """The run and all it started, the services (detached), PostgreSQL and its backends."""
        roots = [p.pid for p in (self.run, self.writer) if p is not None]
        state = json.loads((self.tmp / "stack" / "state.json").read_text())
        roots += [e["pid"] for e in state.values() if e.get("managed") and e.get("pid")]
        pg = postgres.pid_of(Path(state["postgresql"]["data"]))
        assert pg is not None, "no private PostgreSQL in this stack"
        roots.append(pg)
        found: dict[int, psutil.Process] = {}
        for pid in roots:
            try:
                root = psutil.Process(pid)
                for p in [root, *root.children(recursive=True)]:
                    found[p.pid] = p
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def power_cut(self) -> list[psutil.Process]:
        """SIGKILL to every process at once; returns them, all gone."""
        procs = self.every_pid()
        assert len(procs) >= 8, [p.name() for p in procs]  # run, web, shipper, pg, ...
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(procs, timeout=30)
        assert not alive, alive
        # a backend forked after the snapshot above would outlive the cut, which a real power
        # cut never does: PostgreSQL's processes all run in its data dir
        data = self.tmp / "postgresql"
        strays = [p for p in psutil.process_iter() if _runs_in(p, data.resolve())]
        for p in strays:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        _, alive = psutil.wait_procs(strays, timeout=30)
        assert not alive, alive
        for proc in (self.run, self.writer):
            if proc is not None:
                proc.wait(timeout=10)
        return procs

    def shutdown(self) -> None:
        """The end of the test: Ctrl-C to the run (it stops the services it started)."""
        self.stop.set()
        if self.writer is not None and self.writer.poll() is None:
            process.stop(self.writer.pid, timeout=10)
        if self.run is not None and self.run.poll() is None:
            self.run.send_signal(signal.SIGINT)
            try:
                self.run.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.stop(self.run.pid, timeout=10)
        db_engine.dispose_all()
        data = self.tmp / "postgresql"
        if postgres.pid_of(data) and process.alive(postgres.pid_of(data)):
            postgres.stop(data)

    # -- the load ----------------------------------------------------------------------------
    def load(self, token: str) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._events, daemon=True),
            threading.Thread(target=self._alerts, args=(token,), daemon=True),
            threading.Thread(target=self._logs, daemon=True),
        ]
        for t in threads:
            t.start()
        return threads

    def _events(self) -> None:
        from portal.events import bus

        n = 0
        while not self.stop.is_set():
            try:
                self.events.append(bus.publish(self.url, "drill.tick", {"n": n}, "drill"))
            except Exception:  # noqa: BLE001 - the cut: this write was not acknowledged
                return
            n += 1

    def _alerts(self, token: str) -> None:
        n = 0
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
            while not self.stop.is_set():
                body = {
                    "version": "4",
                    "status": "firing",
                    "receiver": "portal",
                    "alerts": [
                        {
                            "status": "firing",
                            "labels": {"alertname": "DrillAlert", "n": str(n)},
                            "annotations": {},
                            "startsAt": datetime.now(UTC).isoformat(),
                            "fingerprint": f"drill{n}",
                        }
                    ],
                }
                try:
                    resp = client.post(f"http://{self.web}/api/alerts", json=body)
                except httpx.HTTPError:
                    return
                if resp.status_code != 200:
                    return
                self.alerts += resp.json()["ids"]
                n += 1

    def _logs(self) -> None:
        path = self.tmp / "log" / "drill.log"
        n = 0
        with open(path, "a") as fh:
            while not self.stop.is_set():
                stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                line = f"{stamp} INFO drill line {n}"
                fh.write(line + "\n")
                fh.flush()  # in the file: the shipper's to deliver
                self.lines.append(line)
                n += 1
                time.sleep(0.001)

    # -- what is stored ----------------------------------------------------------------------
    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(db_engine.libpq_dsn(self.url), connect_timeout=5) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture
def drill() -> Iterator[Drill]:
    tmp = shared_tmpdir("obsportal-powercut-")
    d = Drill(tmp)
    try:
        yield d
    finally:
        d.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def torn(spool: Path) -> None:
    """A record the cut interrupted: half a line at the end of the newest segment."""
    segments = sorted(spool.glob("*.seg"))
    target = segments[-1] if segments else spool / "000000000001.seg"
    spool.mkdir(parents=True, exist_ok=True)
    with open(target, "ab") as fh:
        fh.write(b'1234abcd {"t": 1, "rows": [["2026-12-01T00:00:00Z", "drill", "wri')


def test_sigkill_everything_then_the_normal_start_keeps_every_acknowledged_write(
    drill: Drill,
) -> None:
    drill.start()
    from portal.auth import tokens
    from portal.auth.identity import Identity

    who = Identity("power-cut-drill", "cli", "admin", "local")
    token = tokens.create(drill.url, who, f"drill-{uuid.uuid4().hex[:6]}", "operator")
    db_engine.dispose_all()
    drill.start_writer(0)
    threads = drill.load(token)

    def loaded() -> bool:
        return min(len(drill.events), len(drill.alerts), len(drill.lines), len(drill.samples)) > 20

    assert process.wait_until(loaded, DEADLINE, interval=0.2), (
        len(drill.events),
        len(drill.alerts),
        len(drill.lines),
        len(drill.samples),
    )
    drill.power_cut()  # every process of the stack is gone when this returns
    drill.stop.set()
    for t in threads:
        t.join(timeout=30)
    events, alerts = list(drill.events), list(drill.alerts)
    lines, samples = list(drill.lines), set(drill.samples)
    assert (drill.tmp / "postgresql" / "postmaster.pid").exists()  # stale, as after a cut
    for spool in ("drill", "logship"):
        torn(drill.tmp / "spool" / spool)

    drill.start()  # the normal command, no manual step
    drill.start_writer(max(samples) + 1_000_000)  # replays its spool, then writes new rows
    status = run_portal("stack", "status", "--json", env=drill.env)
    assert status.returncode == 0, status.stderr
    assert {s["state"] for s in json.loads(status.stdout)} == {"healthy"}

    stored_events = {r[0] for r in drill.query("SELECT id FROM events")}
    assert set(events) <= stored_events
    assert set(alerts) <= stored_events

    def every_sample() -> bool:
        got = drill.query("SELECT value FROM metric_samples WHERE name = 'drill_seq'")
        return {int(r[0]) for r in got} >= samples

    assert process.wait_until(every_sample, DEADLINE, interval=0.5), "acknowledged samples lost"

    def every_line() -> bool:
        got = drill.query(
            "SELECT count(*), count(DISTINCT message) FROM log_lines "
            "WHERE component = 'drill' AND message LIKE 'drill line %'"
        )
        return got[0][1] >= len(lines)

    assert process.wait_until(every_line, DEADLINE, interval=0.5), "log lines lost"
    total, distinct = drill.query(
        "SELECT count(*), count(DISTINCT message) FROM log_lines WHERE component = 'drill'"
    )[0]
    assert total == distinct  # none twice
    dupes = drill.query(
        "SELECT value FROM metric_samples WHERE name = 'drill_seq' "
        "GROUP BY value HAVING count(*) > 1"
    )
    assert dupes == []
