"""The log shipper against real PostgreSQL: rotation, truncation, kill -9, database outage."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from collectors.logparse import parse_line
from collectors.logship import component_from_name, parse_sources
from portal.db import engine as db_engine
from portal.db import migrate
from portal.errors import SettingsError
from portal.settings import Settings
from portal.stack import postgres, process
from tests.conftest import REPO, free_port, portal_cmd, run_portal, shared_tmpdir

DEADLINE = 90.0


class Shipper:
    """``portal collect logs`` as a real subprocess, for one test's files and host name."""

    def __init__(self, workdir: Path, database_url: str, host: str, pattern: str) -> None:
        self.workdir, self.host, self.pattern = workdir, host, pattern
        self.env = {
            **os.environ,
            "PORTAL_DATABASE_URL": database_url,
            "PORTAL_DATA_DIR": str(workdir / "var"),
            "PORTAL_HOST_NAME": host,
            "PORTAL_LOG_LEVEL": "INFO",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.workdir / "shipper.out", "ab") as out:
            self.proc = subprocess.Popen(
                portal_cmd("collect", "logs", "--source", f"{self.pattern}=app", "--poll", "0.05"),
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            process.stop(self.proc.pid, timeout=20)
            self.proc.wait()
            self.proc = None

    def state_offsets(self) -> dict[str, int]:
        try:
            data = json.loads((self.workdir / "var" / "logship" / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {v["path"]: v["offset"] for v in data["files"].values()}


def rows(url: str, host: str) -> list[tuple[str, int]]:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        return conn.execute(
            "SELECT message, seq FROM log_lines WHERE host = %s ORDER BY time, source, seq",
            (host,),
        ).fetchall()


def count(url: str, host: str) -> int:
    try:
        with psycopg.connect(db_engine.libpq_dsn(url), connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM log_lines WHERE host = %s", (host,)).fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1


def wait_rows(url: str, host: str, n: int, shipper: Shipper) -> None:
    ok = process.wait_until(lambda: count(url, host) >= n, DEADLINE, interval=0.1)
    if not ok:
        out = (shipper.workdir / "shipper.out").read_text()[-3000:]
        raise AssertionError(f"only {count(url, host)} of {n} rows arrived; shipper said:\n{out}")


def write(path: Path, lines: list[str], mode: str = "a") -> None:
    with open(path, mode) as fh:
        fh.write("".join(line + "\n" for line in lines))


def stamped(prefix: str, n: int, start: int = 0) -> list[str]:
    now = datetime.now(UTC)
    return [
        f"{(now + timedelta(microseconds=i)).isoformat().replace('+00:00', 'Z')} INFO {prefix}-{i}"
        for i in range(start, start + n)
    ]


def assert_exactly_once(url: str, host: str, lines: list[str]) -> None:
    """Every written line is stored exactly once (compared by parsed message)."""
    expected = [parse_line(line).message for line in lines]
    got = [m for m, _ in rows(url, host)]
    dupes = len(got) - len(set(got))
    assert dupes == 0, f"{dupes} duplicated lines"
    missing = set(expected) - set(got)
    assert not missing, f"{len(missing)} lines lost, e.g. {sorted(missing)[:3]}"
    assert len(got) == len(expected)


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = shared_tmpdir("obsportal-logship-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host() -> str:
    return f"ship-{uuid.uuid4().hex[:8]}"


# -- parsing and configuration --------------------------------------------------------------
def test_parse_json_logfmt_and_plain_text() -> None:
    js = parse_line('{"ts": "2026-12-01T06:00:00.5Z", "level": "warn", "msg": "hi", "beam": 3}')
    assert (js.level, js.message, js.labels) == ("WARNING", "hi", {"beam": 3})
    assert js.time == datetime(2026, 12, 1, 6, 0, 0, 500000, tzinfo=UTC)
    lf = parse_line('ts=2026-12-01T06:00:00Z level=error msg="dropped 5 packets" beam=2')
    assert (lf.level, lf.message, lf.labels) == ("ERROR", "dropped 5 packets", {"beam": "2"})
    txt = parse_line("2026-12-01 07:00:00,250 +0100 FATAL l1: ring buffer overflow")
    assert txt.time == datetime(2026, 12, 1, 6, 0, 0, 250000, tzinfo=UTC)
    assert (txt.level, txt.message) == ("CRITICAL", "l1: ring buffer overflow")
    pg = parse_line("2026-12-01 06:50:38.123 UTC [1234] LOG:  database system is ready")
    assert pg.level == "INFO" and pg.message == "[1234] database system is ready"
    cont = parse_line('  File "x.py", line 3, in <module>')
    assert cont.time is None and cont.message == '  File "x.py", line 3, in <module>'
    assert parse_line("a sentence with x=1 in it").message == "a sentence with x=1 in it"
    nul = parse_line('{"msg": "a\\u0000b", "k": "\\u0000"}')  # PostgreSQL text has no NUL
    assert (nul.message, nul.labels) == ("a\ufffdb", {"k": "\ufffd"})


def test_sources_setting() -> None:
    data = Path("/var/x")
    assert [s.pattern for s in parse_sources("", data)] == [
        "/var/x/log/*.log",
        "/var/x/log/*/*.log",
    ]
    srcs = parse_sources("/a/*.log=l1-beam, /b/c.log", data)
    assert [(s.pattern, s.component) for s in srcs] == [("/a/*.log", "l1-beam"), ("/b/c.log", None)]
    with pytest.raises(SettingsError, match="PORTAL_LOG_SOURCES"):
        parse_sources("/a/*.log=", data, "PORTAL_LOG_SOURCES")
    assert component_from_name("/x/l1-beam.log.1") == "l1-beam"


# -- delivery guarantees ---------------------------------------------------------------------
def test_rotation_and_truncation_deliver_every_line_once(
    database_url: str, workdir: Path, host: str
) -> None:
    log = workdir / "app.log"
    shipper = Shipper(workdir, database_url, host, str(workdir / "*.log"))
    expected: list[str] = []
    try:
        first = stamped("first", 300)
        first[7] += " with a NUL \x00 byte"  # PostgreSQL text cannot hold NUL
        write(log, first)
        expected += first
        shipper.start()
        wait_rows(database_url, host, len(expected), shipper)

        # rename-rotation while the writer still appends to the old file, then a new file
        os.rename(log, workdir / "app.log.1")
        late = stamped("late", 50)
        write(workdir / "app.log.1", late)
        fresh = stamped("fresh", 200)
        write(log, fresh)
        expected += late + fresh
        wait_rows(database_url, host, len(expected), shipper)

        # copytruncate: the same inode is emptied and written again
        write(log, [], mode="w")
        again = stamped("again", 100)
        write(log, again)
        expected += again
        wait_rows(database_url, host, len(expected), shipper)

        # rotation while the shipper is down: the renamed file is found by inode on restart
        shipper.stop()
        tail = stamped("tail", 40)
        write(log, tail)
        os.rename(log, workdir / "app.log.2")
        newest = stamped("newest", 60)
        write(log, newest)
        expected += tail + newest
        shipper.start()
        wait_rows(database_url, host, len(expected), shipper)
    finally:
        shipper.stop()
    assert_exactly_once(database_url, host, expected)


def test_kill_9_mid_batch_then_restart_is_exactly_once(
    database_url: str, workdir: Path, host: str
) -> None:
    log = workdir / "app.log"
    lines = []
    for i, line in enumerate(stamped("k9", 60000)):
        lines.append(line)
        if i % 10 == 0:  # continuation lines carry no timestamp: their time must be stable
            lines.append(f"    at frame {i} of k9-trace")
    write(log, lines)
    shipper = Shipper(workdir, database_url, host, str(log))
    try:
        for _ in range(2):  # two crashes at different points of the stream
            shipper.start()
            before = count(database_url, host)
            moved = process.wait_until(
                lambda b=before: count(database_url, host) > b, DEADLINE, interval=0.02
            )
            assert moved, "the shipper made no progress before the kill"
            shipper.kill9()
        assert count(database_url, host) < len(lines), "the kill came too late to be mid-stream"
        shipper.start()
        wait_rows(database_url, host, len(lines), shipper)
    finally:
        shipper.stop()
    got = rows(database_url, host)
    assert len({seq for _, seq in got}) == len(got) == len(lines)
    assert_exactly_once(database_url, host, lines)


def test_database_outage_loses_nothing(workdir: Path, host: str) -> None:
    pgdir = shared_tmpdir("obsportal-logship-pg-")
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/logship_outage"
    data = pgdir / "data"
    postgres.start(url, data, pgdir / "pg.log")
    shipper = Shipper(workdir, url, host, str(workdir / "*.log"))
    log = workdir / "app.log"
    try:
        migrate.upgrade(url)
        db_engine.dispose_all()
        before = stamped("before", 500)
        write(log, before)
        shipper.start()
        wait_rows(url, host, len(before), shipper)

        postgres.stop(data)
        during = stamped("during", 700)
        write(log, during)
        size = log.stat().st_size
        read = process.wait_until(
            lambda: shipper.state_offsets().get(str(log)) == size, DEADLINE, interval=0.05
        )
        assert read, "the shipper did not read the lines written during the outage"
        spool = workdir / "var" / "spool" / "logship"
        assert any(p.stat().st_size for p in spool.glob("*.seg")), "nothing was spooled"
        assert shipper.proc is not None and shipper.proc.poll() is None, "the shipper died"

        postgres.start(url, data, pgdir / "pg.log")
        wait_rows(url, host, len(before) + len(during), shipper)
        assert_exactly_once(url, host, before + during)
    finally:
        shipper.stop()
        db_engine.dispose_all()
        postgres.stop(data)
        shutil.rmtree(pgdir, ignore_errors=True)


def test_default_sources_ship_the_stacks_own_logs(stack: Settings, tmp_path: Path) -> None:
    """What `make run` does: with no sources configured, the services' logs in <data_dir>/log."""
    host = f"stack-{uuid.uuid4().hex[:6]}"
    env = {
        "PORTAL_HOST_NAME": host,
        "PORTAL_LOG_SOURCES": "",
    }
    state = tmp_path / "state"
    run_portal("collect", "logs", "--once", "--state-dir", str(state), env=env, check=True)
    found = run_portal("logs", "--host", host, "--component", "prometheus", env=env, check=True)
    assert "Server is ready to receive web requests" in found.stdout
    comps = {line.split(" ")[2] for line in run_portal("logs", "--host", host).stdout.splitlines()}
    assert {"prometheus", "pushgateway", "alertmanager"} <= comps
    # Prometheus's logfmt lines carry component=tsdb, web, ...: a label beside the file's
    # component, never in its place
    every = run_portal("logs", "--host", host, "--format", "jsonl", env=env, check=True).stdout
    prom = [
        json.loads(line)
        for line in every.splitlines()
        if json.loads(line)["labels"]["file"].endswith("/prometheus.log")
    ]
    assert prom and {r["component"] for r in prom} == {"prometheus"}
    assert any(r["labels"].get("record_component") for r in prom), prom[:3]
    assert all(r["host"] == host for r in prom)
    newest = run_portal("logs", "--host", host, "--tail", "3", env=env, check=True).stdout
    whole = run_portal("logs", "--host", host, env=env).stdout
    assert newest.splitlines() == whole.splitlines()[-3:]
