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

from collectors.logparse import CONTINUATION, HEAD, OTHER, line_kind, parse_line
from collectors.logship import MAX_RECORD_BYTES, _records, component_from_name, parse_sources
from portal.db import engine as db_engine
from portal.db import migrate
from portal.errors import SettingsError
from portal.settings import Settings
from portal.stack import postgres, process
from tests.conftest import REPO, free_port, portal_cmd, run_portal, shared_tmpdir

DEADLINE = 90.0


class Shipper:
    """``portal collect logs`` as a real subprocess, for one test's files and host name."""

    def __init__(
        self, workdir: Path, database_url: str, host: str, pattern: str, *args: str
    ) -> None:
        self.workdir, self.host, self.pattern, self.args = workdir, host, pattern, args
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
                portal_cmd(
                    "collect",
                    "logs",
                    "--source",
                    f"{self.pattern}=app",
                    "--poll",
                    "0.05",
                    *self.args,
                ),
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


def joined(lines: list[str]) -> list[str]:
    """The records ``lines`` make: an indented line continues the record above it."""
    out: list[str] = []
    for line in lines:
        if out and line[:1].isspace():
            out[-1] += "\n" + line
        else:
            out.append(line)
    return out


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
    coloured = parse_line("\x1b[33mWARN\x1b[0m \x1b]0;title\x07low disk")
    assert (coloured.level, coloured.message) == ("WARNING", "WARN low disk")
    nul = parse_line('{"msg": "a\\u0000b", "k": "\\u0000"}')  # PostgreSQL text has no NUL
    assert (nul.message, nul.labels) == ("a\ufffdb", {"k": "\ufffd"})


def test_record_rules() -> None:
    """Which lines open a record and which continue one (``line_kind``, ``_records``)."""
    cont = [
        "  File x",
        "\tat Foo.bar(Foo.java:3)",
        "Traceback (most recent call last):",
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
        "Caused by: java.io.IOException",
        "... 12 more",
    ]
    assert {line_kind(c) for c in cont} == {CONTINUATION}
    heads = ["2026-12-01 06:00:00 x", '{"a": 1}', "level=info", "<13>x", "ERROR: x", "Dec  1 x"]
    assert [line_kind(h) for h in heads[:-1]] == [HEAD] * 5 and line_kind(heads[-1]) == OTHER
    assert line_kind("ValueError: bad") == line_kind("hello") == OTHER
    text = b"2026-12-01T00:00:00Z ERROR x\n  a\n\n  b\nValueError: c\n \n\n2026-12-01T00:00:01Z y\n"
    got = _records(text, len(text), None)
    assert [t for _, _, t in got] == [
        "2026-12-01T00:00:00Z ERROR x\n  a\n\n  b\nValueError: c",  # trailing blanks dropped
        "2026-12-01T00:00:01Z y",
    ]
    assert [g[:2] for g in got] == [(0, text.index(b" \n\n")), (text.index(b"2026", 1), len(text))]
    # without a head above them, plain lines stand alone
    assert [t for _, _, t in _records(b"a\nb\n", 4, None)] == ["a", "b"]
    # a record stops growing at MAX_RECORD_BYTES
    big = b"2026-12-01T00:00:00Z ERROR x\n" + (b"  " + b"y" * 998 + b"\n") * 100
    cut = _records(big, len(big), None)
    assert len(cut) == 2 and all(len(t) <= MAX_RECORD_BYTES for _, _, t in cut)
    assert cut[1][0] == cut[0][1] and cut[1][1] == len(big)
    # RFC 3164 has no year: a date more than a day ahead is last year's
    ahead = datetime.now(UTC) + timedelta(days=3)
    parsed = parse_line(f"{ahead:%b} {ahead.day:2d} 10:00:00 host x")
    assert parsed.time is not None and parsed.time.year == ahead.year - 1


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
    (src,) = parse_sources(["/a/*.log=job;start=\\d{4}-|=="], data)
    assert (src.pattern, src.component) == ("/a/*.log", "job")
    assert src.start is not None and src.start.pattern == "\\d{4}-|=="
    assert parse_sources("/a/*.log;start=x", data)[0].component is None
    with pytest.raises(SettingsError, match="not a regex"):
        parse_sources("/a/*.log;start=(", data)
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
        if i % 10 == 0:  # continuation lines: joined to the line above, never lost or doubled
            lines.append(f"    at frame {i} of k9-trace")
    records = joined(lines)
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
        assert count(database_url, host) < len(records), "the kill came too late"
        shipper.start()
        wait_rows(database_url, host, len(records), shipper)
    finally:
        shipper.stop()
    got = rows(database_url, host)
    assert len({seq for _, seq in got}) == len(got) == len(records)
    assert_exactly_once(database_url, host, records)


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


# -- records, time formats, unfinished lines -------------------------------------------------
def ship_once(workdir: Path, url: str, host: str, source: str, *args: str) -> None:
    """One ``portal collect logs --once`` run over ``source`` (``GLOB[...]``)."""
    env = {"PORTAL_DATABASE_URL": url, "PORTAL_DATA_DIR": str(workdir / "var")}
    env["PORTAL_HOST_NAME"] = host
    done = run_portal("collect", "logs", "--once", "--source", source, *args, env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]


def quiet(path: Path) -> None:
    """Make ``path`` look untouched for an hour (its mtime), as a file its writer left."""
    then = datetime.now(UTC).timestamp() - 3600
    os.utime(path, (then, then))


def records_of(url: str, host: str) -> list[tuple[datetime, str, str, int]]:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        return conn.execute(
            "SELECT time, level, message, seq FROM log_lines WHERE host = %s ORDER BY seq",
            (host,),
        ).fetchall()


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "worker.py", line 12, in run',
    "    step()",
    "ValueError: bad frame 7",
]


def test_traceback_is_one_error_record_with_the_head_time(
    database_url: str, workdir: Path, host: str
) -> None:
    log = workdir / "app.log"
    t0 = datetime.now(UTC).replace(microsecond=123000) - timedelta(hours=1)
    t1 = t0 + timedelta(seconds=1)
    head = f"{iso(t0)} ERROR worker failed"
    write(log, [head, *TRACEBACK, "", f"{iso(t1)} INFO next"])
    quiet(log)
    ship_once(workdir, database_url, host, f"{log}=app")
    got = records_of(database_url, host)
    assert [(r[0], r[1], r[2]) for r in got] == [
        (t0, "ERROR", "worker failed\n" + "\n".join(TRACEBACK)),
        (t1, "INFO", "next"),
    ]
    env = {"PORTAL_DATABASE_URL": database_url}
    errors = run_portal("logs", "--host", host, "--level", "error", env=env, check=True).stdout
    assert errors.count("\n") == 1 and "ValueError: bad frame 7" in errors, errors


def test_a_record_split_across_reads_and_a_kill_is_joined_once(
    database_url: str, workdir: Path, host: str
) -> None:
    """The offset stops at the start of the last, perhaps unfinished, record."""
    log = workdir / "app.log"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    stamps = [iso(t0 + timedelta(seconds=i)) for i in range(4)]
    write(log, [f"{stamps[0]} INFO one", f"{stamps[1]} ERROR two", *TRACEBACK[:2]])
    # a --once run, then a restart: the second record's first half is not stored on its own
    ship_once(workdir, database_url, host, f"{log}=app", "--partial-after", "1h")
    assert [r[2] for r in records_of(database_url, host)] == ["one"]
    write(log, [*TRACEBACK[2:], f"{stamps[2]} WARNING three", "  indented part of three"])
    ship_once(workdir, database_url, host, f"{log}=app", "--partial-after", "1h")
    assert [r[2] for r in records_of(database_url, host)] == [
        "one",
        "two\n" + "\n".join(TRACEBACK),
    ]
    # a running shipper killed while it holds the third record's first half
    shipper = Shipper(workdir, database_url, host, str(log), "--partial-after", "1h")
    state = workdir / "var" / "logship" / "state.json"
    clock = json.loads(state.read_text())["clock"]
    try:
        shipper.start()
        cycled = process.wait_until(
            lambda: json.loads(state.read_text())["clock"] != clock, DEADLINE, interval=0.05
        )
        assert cycled, "the shipper saved no checkpoint"
        shipper.kill9()
        write(log, ["  last part of three", f"{stamps[3]} INFO four"])
        shipper.start()
        wait_rows(database_url, host, 3, shipper)
    finally:
        shipper.stop()
    got = records_of(database_url, host)
    assert [(r[1], r[2]) for r in got] == [
        ("INFO", "one"),
        ("ERROR", "two\n" + "\n".join(TRACEBACK)),
        ("WARNING", "three\n  indented part of three\n  last part of three"),
    ]
    assert got[1][0] == t0 + timedelta(seconds=1)
    quiet(log)  # the writer stopped: the held last record goes out too
    ship_once(workdir, database_url, host, f"{log}=app", "--partial-after", "30m")
    assert [r[2] for r in records_of(database_url, host)][3:] == ["four"]


def test_start_pattern_per_source(database_url: str, workdir: Path, host: str) -> None:
    """``;start=REGEX``: only matching lines open a record, whatever they look like."""
    log = workdir / "job.log"
    write(log, ["== step 1", "2026-12-01 00:00:00 INFO inside step 1", "done", "== step 2"])
    quiet(log)
    ship_once(workdir, database_url, host, f"{log}=job;start===")
    got = [r[2] for r in records_of(database_url, host)]
    assert got == ["== step 1\n2026-12-01 00:00:00 INFO inside step 1\ndone", "== step 2"]


def test_colours_and_common_time_formats(database_url: str, workdir: Path, host: str) -> None:
    log = workdir / "mixed.log"
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    secs = int(when.timestamp())
    syslog_day = f"{when:%b} {when.day:2d} {when:%H:%M:%S}"
    lines = {
        f"{iso(when)} \x1b[31mERROR\x1b[0m \x1b[1mdisk\x1b[0m full": ("ERROR", "disk full"),
        f"{syslog_day} cn07 sshd[42]: accepted": ("INFO", "cn07 sshd[42]: accepted"),
        f"<11>{syslog_day} cn07 app: failed": ("ERROR", "cn07 app: failed"),
        f"<12>1 {when:%Y-%m-%dT%H:%M:%S}.000Z cn07 app 42 ID1 - careful": (
            "WARNING",
            "cn07 app 42 ID1 - careful",
        ),
        f"{secs}.5 WARN epoch seconds": ("WARNING", "epoch seconds"),
        f"{secs * 1000} ERROR epoch millis": ("ERROR", "epoch millis"),
        json.dumps({"ts": secs, "level": "error", "msg": "json seconds"}): (
            "ERROR",
            "json seconds",
        ),
        json.dumps({"timestamp": secs * 1000 + 250, "msg": "json millis"}): ("INFO", "json millis"),
        json.dumps({"time": str(secs), "msg": "json text"}): ("INFO", "json text"),
        f'10.0.0.1 - - [{when:%d/%b/%Y:%H:%M:%S} +0000] "GET / HTTP/1.1" 200 5': (
            "INFO",
            '10.0.0.1 - - "GET / HTTP/1.1" 200 5',
        ),
    }
    write(log, list(lines))
    quiet(log)
    ship_once(workdir, database_url, host, f"{log}=app")
    got = records_of(database_url, host)
    assert [(r[1], r[2]) for r in got] == list(lines.values())
    offsets = {
        "epoch seconds": timedelta(milliseconds=500),
        "json millis": timedelta(milliseconds=250),
    }
    for stamp, _, message, _ in got:
        assert stamp == when + offsets.get(message, timedelta()), message


def test_unfinished_last_line_is_shipped_when_quiet_and_never_twice(
    database_url: str, workdir: Path, host: str
) -> None:
    """A line without its newline waits for ``--partial-after`` of quiet (by the file's mtime;
    ``--once`` alone ships it at once); once shipped, what its writer appends later is a line
    of its own: no byte stored twice."""
    log = workdir / "app.log"
    stamps = [iso(datetime.now(UTC) - timedelta(minutes=10 - i)) for i in range(3)]
    log.write_text(f"{stamps[0]} INFO first\n{stamps[1]} ERROR unfinished")
    ship_once(workdir, database_url, host, f"{log}=app", "--partial-after", "1h")
    assert [r[2] for r in records_of(database_url, host)] == ["first"]
    quiet(log)  # an hour ago
    ship_once(workdir, database_url, host, f"{log}=app", "--partial-after", "30m")
    assert [r[2] for r in records_of(database_url, host)] == ["first", "unfinished"]
    with open(log, "a") as fh:
        fh.write(f" and its end\n{stamps[2]} INFO last\n")
    quiet(log)
    ship_once(workdir, database_url, host, f"{log}=app")
    got = records_of(database_url, host)
    assert [(r[1], r[2]) for r in got] == [
        ("INFO", "first"),
        ("ERROR", "unfinished"),
        ("INFO", " and its end"),  # the rest of the line, as written
        ("INFO", "last"),
    ]
    assert len({r[3] for r in got}) == 4


def test_a_gathered_file_can_take_host_and_component_from_its_records(
    database_url: str, tmp_path: Path
) -> None:
    """A folder of files gathered from many hosts: ``;record=host+component`` makes each
    record's own fields the row's columns (without it they stay labels, as tested above)."""
    tag = uuid.uuid4().hex[:6]
    lines = [
        json.dumps(
            {
                "time": f"2026-12-01T03:00:0{i}Z",
                "level": "warning",
                "host": f"far-{tag}-{i % 2}",
                "component": "l1-dedisp",
                "msg": f"m{i}",
            }
        )
        for i in range(4)
    ]
    (tmp_path / "gathered.log").write_text("\n".join(lines) + "\n")
    bad = run_portal("collect", "logs", "--once", "--source", "x.log;record=inode")
    assert bad.returncode == 2 and "record=host+component" in bad.stderr
    ship_once(tmp_path, database_url, f"central-{tag}", f"{tmp_path}/*.log;record=host+component")
    with psycopg.connect(db_engine.libpq_dsn(database_url)) as conn:
        rows = conn.execute(
            "SELECT host, component, labels FROM log_lines WHERE host LIKE %s ORDER BY host",
            (f"far-{tag}-%",),
        ).fetchall()
    assert [(h, c) for h, c, _ in rows] == [
        (f"far-{tag}-0", "l1-dedisp"),
        (f"far-{tag}-0", "l1-dedisp"),
        (f"far-{tag}-1", "l1-dedisp"),
        (f"far-{tag}-1", "l1-dedisp"),
    ]
    assert all("host" not in labels and "record_host" not in labels for *_, labels in rows)
    assert records_of(database_url, f"central-{tag}") == []


def test_files_met_twice_in_one_pass_are_registered_once_and_stored_once(
    database_url: str, workdir: Path, host: str
) -> None:
    """New files are looked up and registered together; one matched by two globs (a link, or
    overlapping sources) is one source, its lines stored once."""
    for name in ("app.log", "app-2.log", "other.log"):
        (workdir / name).write_text("".join(f"level=info msg={name}-{i}\n" for i in range(3)))
    pattern = f"{workdir}/*.log"
    ship_once(workdir, database_url, host, pattern, "--source", f"{workdir}/app*.log")
    with psycopg.connect(db_engine.libpq_dsn(database_url)) as conn:
        sources = conn.execute(
            "SELECT count(*), count(DISTINCT fingerprint) FROM log_sources WHERE host = %s",
            (host,),
        ).fetchone()
    assert sources == (3, 3)
    got = sorted(m for _, _, m, _ in records_of(database_url, host))
    assert got == sorted(
        f"{n}-{i}" for n in ("app.log", "app-2.log", "other.log") for i in range(3)
    )
