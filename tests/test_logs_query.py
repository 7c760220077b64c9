"""Log queries on real PostgreSQL: selector parser, CLI filters and formats, ``/api/logs``,
live tail, retention by dropping partitions, and a 1,000,000-line query in bounded memory."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import flask
import psycopg
import pytest

from portal.cli import main
from portal.db import engine as db_engine
from portal.db import timeseries
from portal.db.writer import copy_rows
from portal.logs import query as lq
from portal.logs.api import blueprint
from portal.logs.selector import LineFilter, Matcher, SelectorError, parse
from portal.logs.store import COLUMNS
from portal.settings import Settings
from portal.stack import process
from tests.conftest import REPO, portal_cmd, run_portal

#: Peak RSS allowed for a CLI streaming 1,000,000 lines (an idle CLI is about 50 MB; holding
#: the result in memory would need several hundred).
RSS_BOUND_KB = 120 * 1024
#: Runs a command and reports its peak RSS. A fresh small parent matters: Linux carries the
#: forking process's RSS high-water mark into the child's ``ru_maxrss`` (pytest is ~150 MB).
MEASURE = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
    "print(f'peak_rss_kb={kb}', file=sys.stderr); sys.exit(rc)"
)


# -- selector parser -------------------------------------------------------------------------
def test_selector_valid_forms() -> None:
    sel = parse('{host="cn07",component=~"l1.*"} |= "dropped"')
    assert sel.matchers == (Matcher("host", "=", "cn07"), Matcher("component", "=~", "l1.*"))
    assert sel.filters == (LineFilter("|=", "dropped"),)
    sel = parse(' { level != "DEBUG" , beam !~ `1|2` } != "ok" |~ "lost \\\\d+" !~ "x"')
    assert [m.op for m in sel.matchers] == ["!=", "!~"]
    assert sel.matchers[1].value == "1|2"
    assert [(f.op, f.value) for f in sel.filters] == [
        ("!=", "ok"),
        ("|~", "lost \\d+"),
        ("!~", "x"),
    ]
    assert parse("{}").matchers == ()
    assert parse('|= "only a filter"').filters == (LineFilter("|=", "only a filter"),)
    assert parse('{host="a\\"b"}').matchers[0].value == 'a"b'
    assert parse(sel.logql()) == sel  # round trip


@pytest.mark.parametrize(
    ("text", "pos", "problem"),
    [
        ('{host="cn07" component="x"}', 13, "expected ',' or '}'"),
        ('{host=cn07"}', 6, "expected a quoted string"),
        ('{host=="cn07"}', 6, "expected a quoted string"),
        ('{host~"cn07"}', 5, "expected one of = != =~ !~"),
        ('{9host="x"}', 1, "expected a label name"),
        ('{host="cn07}', 6, "unterminated string"),
        ('{host="cn07"} | "x"', 14, "expected a line filter"),
        ('{host=~"l1(("}', 7, "invalid regular expression"),
        ('{host="x"', 9, "found the end of the selector"),
        ("   ", 0, "the selector is empty"),
    ],
)
def test_selector_errors_point_at_the_character(text: str, pos: int, problem: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    err = info.value
    assert err.pos == pos, str(err)
    assert problem in str(err)
    first, shown, caret = str(err).splitlines()
    assert first.startswith(f"bad selector at character {pos + 1}:")
    assert shown == f"  {text}" and caret == "  " + " " * pos + "^"


def test_level_parsing() -> None:  # times: tests/test_timeparse.py
    assert lq.parse_level("warn") == "WARNING"
    with pytest.raises(lq.PortalError, match="unknown level"):
        lq.parse_level("loud")


# -- data for the CLI and API -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(cfg: Settings) -> Iterator[dict[str, object]]:
    """A few known lines on two hosts and three components, one hour ago and now."""
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(UTC).replace(microsecond=0)
    a, b = f"cn07-{tag}", f"cn08-{tag}"
    rows = [
        (now - timedelta(minutes=90), a, "l1-beam", "INFO", "beam 1 started", {}, tag, 1),
        (
            now - timedelta(minutes=50),
            a,
            "l1-beam",
            "WARNING",
            "beam 1 dropped 12 packets",
            {},
            tag,
            2,
        ),
        (
            now - timedelta(minutes=40),
            a,
            "l1-rfi",
            "ERROR",
            "RFI mask\nfailed",
            {"beam": "1"},
            tag,
            3,
        ),
        (now - timedelta(minutes=30), a, "hhat", "DEBUG", "stack daily checked", {}, tag, 4),
        (now - timedelta(minutes=20), b, "l1-beam", "CRITICAL", "beam 2 Dropped all", {}, tag, 5),
        (now - timedelta(minutes=10), b, "hhat", "INFO", "dropped nothing", {}, tag, 6),
    ]
    with db_engine.connect_raw(cfg.database_url) as conn, conn.transaction():
        copy_rows(conn, "log_lines", COLUMNS, [(*r[:5], json.dumps(r[5]), *r[6:]) for r in rows])
    yield {"a": a, "b": b, "now": now, "tag": tag}


class InProcess:
    """``portal logs ...`` through the real entry point (``portal.cli.main``), in this process:
    the same code as the subprocess runs, without paying interpreter start-up per call."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            main(["logs", *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err

    def lines(self, *args: str) -> list[str]:
        code, out, err = self(*args)
        assert code == 0, err
        return out.splitlines()


@pytest.fixture
def portal_logs(capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(capsys)


def messages(lines: list[str]) -> list[str]:
    return [line.split(" ", 4)[4] for line in lines]


def test_cli_filters(sample: dict[str, str], portal_logs: InProcess) -> None:
    cli_lines = portal_logs.lines
    a, b = sample["a"], sample["b"]
    both = f"cn0?-{sample['tag']}"
    assert len(cli_lines("--host", a)) == 4
    assert messages(cli_lines("--host", a, "--component", "l1*")) == [
        "beam 1 started",
        "beam 1 dropped 12 packets",
        "RFI mask\\nfailed",
    ]
    assert messages(cli_lines("--host", both, "--level", "warning")) == [
        "beam 1 dropped 12 packets",
        "RFI mask\\nfailed",
        "beam 2 Dropped all",
    ]
    assert messages(cli_lines("--host", both, "--since", "45m", "--until", "15m")) == [
        "RFI mask\\nfailed",
        "stack daily checked",
        "beam 2 Dropped all",
    ]
    assert messages(cli_lines("--host", both, "--grep", "dropped", "-i")) == [
        "beam 1 dropped 12 packets",
        "beam 2 Dropped all",
        "dropped nothing",
    ]
    assert messages(cli_lines("--host", a, "--host", b, "--component", "hhat", "--limit", "1")) == [
        "stack daily checked"
    ]
    sel = f'{{host=~"cn0.-{sample["tag"]}",component=~"l1.*"}} |= "dropped" != "all"'
    assert messages(cli_lines(sel)) == ["beam 1 dropped 12 packets"]
    assert messages(cli_lines(f'{{host="{a}", beam="1"}}')) == ["RFI mask\\nfailed"]


def test_cli_text_and_jsonl_formats(sample: dict[str, object], portal_logs: InProcess) -> None:
    now = sample["now"]
    assert isinstance(now, datetime)
    real = run_portal("logs", "--host", str(sample["a"]), "--component", "l1-rfi", check=True)
    (line,) = real.stdout.splitlines()  # a real process's stdout
    when = (now - timedelta(minutes=40)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert line == f"{when} {sample['a']} l1-rfi ERROR RFI mask\\nfailed"
    (js,) = portal_logs.lines(
        "--host", str(sample["a"]), "--component", "l1-rfi", "--format", "jsonl"
    )
    obj = json.loads(js)
    assert obj == {
        "time": when,
        "host": sample["a"],
        "component": "l1-rfi",
        "level": "ERROR",
        "message": "RFI mask\nfailed",
        "labels": {"beam": "1"},
    }


def test_tail_prints_the_newest_lines_oldest_first(
    sample: dict[str, str], portal_logs: InProcess
) -> None:
    both = f"cn0?-{sample['tag']}"
    every = portal_logs.lines("--host", both)
    assert portal_logs.lines("--host", both, "--tail", "3") == every[-3:]
    assert messages(portal_logs.lines("--host", both, "-n", "2", "--level", "warning")) == [
        "RFI mask\\nfailed",
        "beam 2 Dropped all",
    ]
    assert portal_logs.lines("--host", both, "--tail", "100") == every
    assert portal_logs.lines("--host", both, "--tail", "0") == []
    for args, text in [
        (("--tail", "-1"), "--tail must be 0 or more"),
        (("--tail", "2", "--limit", "2"), "--tail and --limit do not combine"),
    ]:
        code, out, err = portal_logs("--host", both, *args)
        assert code == 1 and out == "" and err.startswith("error: ") and text in err, err
        assert len(err.strip().splitlines()) == 1


def test_unknown_host_is_one_clear_error_with_near_names(
    sample: dict[str, str], portal_logs: InProcess
) -> None:
    a, tag = sample["a"], sample["tag"]
    typo = a.replace("cn07", "cn7")  # never stored
    code, out, err = portal_logs("--host", typo)
    assert code == 1 and out == ""
    assert err.startswith(f"error: unknown host '{typo}': no log line was ever stored for it")
    assert a in err.split("(near: ")[1]
    assert len(err.strip().splitlines()) == 1
    code, out, err = portal_logs("--host", f"zz-{tag}-*")  # a glob matching nothing
    assert code == 1 and out == ""
    assert f"no host with stored log lines matches 'zz-{tag}-*'" in err
    code, out, err = portal_logs("--host", a, "--host", typo)  # one unknown of two is enough
    assert code == 1 and typo in err and f"'{a}'" not in err.split("(near")[0]
    # known names and globs that match still work, even when nothing is in the time range
    assert portal_logs.lines("--host", f"cn0?-{tag}", "--since", "1m") == []
    real = run_portal("logs", "--host", typo)  # a real process: one line, exit code 1
    assert real.returncode == 1 and real.stdout == "" and "Traceback" not in real.stderr
    assert real.stderr.startswith("error: unknown host") and len(real.stderr.splitlines()) == 1


def test_known_hosts_reads_an_index_not_the_lines(cfg: Settings, sample: dict[str, str]) -> None:
    logged, _inventory = lq.known_hosts(cfg.database_url)
    assert {sample["a"], sample["b"]} <= set(logged)
    with db_engine.connect_raw(cfg.database_url) as conn:
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + lq.KNOWN_HOSTS_SQL))
    assert "log_lines_host_component_time" in plan or "host_component_time" in plan, plan
    assert "Seq Scan on log_lines" not in plan, plan


def test_cli_bad_input_is_one_clear_error(sample: dict[str, str], portal_logs: InProcess) -> None:
    bad = run_portal("logs", '{host="cn07" component="x"}')  # one real process, end to end
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: bad selector at character 14")
    assert bad.stderr.splitlines()[-1].strip() == "^"
    for args, text in [
        (("--since", "2 fortnights"), "neither a duration"),
        (("--level", "loud"), "unknown level"),
        (("--grep", "a{2,1}", "--regex"), "invalid regular expression"),
        (("--since", "1h", "--until", "2h"), "--since must be before --until"),
        (("--limit", "-1"), "--limit must be 0 or more"),
    ]:
        code, out, err = portal_logs(*args)
        assert code == 1 and out == "", err
        assert err.startswith("error: ") and text in err
        assert len(err.strip().splitlines()) == 1


# -- REST endpoint -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(cfg: Settings) -> flask.testing.FlaskClient:
    app = flask.Flask(__name__)
    app.config["PORTAL_SETTINGS"] = cfg
    app.register_blueprint(blueprint)
    return app.test_client()


def test_api_logs_filters_formats_and_download(
    client: flask.testing.FlaskClient, sample: dict[str, str]
) -> None:
    a = sample["a"]
    resp = client.get("/api/logs", query_string={"host": a, "component": "l1*", "level": "WARN"})
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    assert messages(resp.get_data(as_text=True).splitlines()) == [
        "beam 1 dropped 12 packets",
        "RFI mask\\nfailed",
    ]
    cli = run_portal("logs", "--host", a, "--component", "l1*", "--level", "WARN").stdout
    assert resp.get_data(as_text=True) == cli  # the same lines as the CLI, byte for byte
    resp = client.get(
        "/api/logs", query_string={"query": f'{{host="{a}"}} |= "beam"', "format": "jsonl"}
    )
    assert resp.mimetype == "application/x-ndjson"
    assert [json.loads(x)["message"] for x in resp.get_data(as_text=True).splitlines()] == [
        "beam 1 started",
        "beam 1 dropped 12 packets",
    ]
    resp = client.get("/api/logs", query_string={"host": a, "download": "1"})
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and f'filename="{a}-' in disposition
    assert disposition.endswith('.log"') and len(resp.get_data(as_text=True).splitlines()) == 4
    empty = client.get("/api/logs", query_string={"host": "no-such-host"})
    assert empty.status_code == 200 and empty.get_data() == b""


def test_api_logs_bad_input_is_400_with_one_sentence(client: flask.testing.FlaskClient) -> None:
    for params, text in [
        ({"query": '{host="x"'}, "bad selector at character 10"),
        ({"since": "soon"}, "neither a duration"),
        ({"format": "xml"}, "is not one of text, jsonl"),
        ({"limit": "ten"}, "not a whole number"),
        ({"grep": "a{2,1}", "re": "1"}, "invalid regular expression"),
        ({"query": '|~ "' + "(" * 500 + "a" + ")" * 500 + '"'}, "nested more than 50 groups"),
    ]:
        resp = client.get("/api/logs", query_string=params)
        assert resp.status_code == 400, params
        assert resp.mimetype == "application/json" and set(resp.get_json()) == {"error"}
        error = resp.get_json()["error"]
        assert text in error and "\n" not in error and "Traceback" not in error


# -- live tail ------------------------------------------------------------------------------------
def test_follow_prints_new_lines_as_they_arrive(cfg: Settings) -> None:
    host = f"tail-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        portal_cmd("logs", "--follow", "--host", host),
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    got: list[str] = []
    try:
        for i in range(3):
            row = (datetime.now(UTC), host, "l1", "INFO", f"live {i}", "{}", host, i)
            with db_engine.connect_raw(cfg.database_url) as conn, conn.transaction():
                copy_rows(conn, "log_lines", COLUMNS, [row])
            shown = process.wait_until(lambda n=i: _drain(lines, got) > n, 30)
            assert shown, f"line {i} not shown"
    finally:
        process.stop(proc.pid)
        proc.wait()
    assert messages(got) == ["live 0", "live 1", "live 2"]


def _drain(lines: queue.Queue[str], into: list[str]) -> int:
    while not lines.empty():
        into.append(lines.get().rstrip("\n"))
    return len(into)


# -- retention ------------------------------------------------------------------------------------
def test_retention_drops_whole_old_partitions(cfg: Settings, database_url: str) -> None:
    engine = db_engine.get_engine(database_url)
    with engine.begin() as conn:
        if timeseries.installed_backend(conn) != "partman":
            pytest.skip("retention by partition needs pg_partman on this server")
        old_day = date.today() - timedelta(days=cfg.logs_retention_days + 5)
        timeseries.ensure_partitions(conn, "log_lines", old_day, old_day)
    name = f"log_lines_p{old_day:%Y_%m_%d}"
    host = f"ret-{uuid.uuid4().hex[:6]}"
    old = datetime.combine(old_day, datetime.min.time(), UTC) + timedelta(hours=12)
    rows = [
        (old, host, "x", "INFO", "expired", "{}", host, 1),
        (datetime.now(UTC), host, "x", "INFO", "kept", "{}", host, 2),
    ]
    with db_engine.connect_raw(database_url) as conn:
        with conn.transaction():
            copy_rows(conn, "log_lines", COLUMNS, rows)
        assert conn.execute(f"SELECT count(*) FROM {name}").fetchone() == (1,)
    result = run_portal("db", "maintain", check=True)
    assert "maintenance done (partman)" in result.stdout
    with engine.connect() as conn:
        assert name not in timeseries.partitions(conn, "log_lines")
    with db_engine.connect_raw(database_url) as conn:
        left = conn.execute("SELECT message FROM log_lines WHERE host = %s", (host,)).fetchall()
    assert left == [("kept",)]


# -- a million lines -------------------------------------------------------------------------
def test_million_line_query_streams_in_bounded_memory(cfg: Settings) -> None:
    host = f"bulk-{uuid.uuid4().hex[:6]}"
    n = 1_000_000
    with psycopg.connect(db_engine.libpq_dsn(cfg.database_url), autocommit=True) as conn:
        conn.execute(  # one statement, server-side: 1M rows across the last ~17 minutes
            "INSERT INTO log_lines (time, host, component, level, message, labels, source, seq) "
            "SELECT now() - interval '1 hour' + i * interval '1 millisecond', %s, 'l1-beam', "
            "'INFO', 'beam ' || mod(i, 8) || ' received packet batch ' || i || ' ok', '{}', %s, i "
            "FROM generate_series(1, %s) AS i",
            (host, host, n),
        )
    try:
        cli = portal_cmd("logs", "--host", host, "--component", "l1-*", "--since", "2h")
        proc = subprocess.Popen(
            [sys.executable, "-c", MEASURE, *cli],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=dict(os.environ),
        )
        assert proc.stdout is not None and proc.stderr is not None
        lines = 0
        last = b""
        while chunk := proc.stdout.read(1 << 16):
            lines += chunk.count(b"\n")
            last = (last + chunk)[-200:]
        err = proc.stderr.read().decode()
        assert proc.wait() == 0, err
        assert lines == n
        assert last.endswith(f"received packet batch {n} ok\n".encode())  # oldest first
        peak_kb = int(err.strip().splitlines()[-1].removeprefix("peak_rss_kb="))
        assert peak_kb < RSS_BOUND_KB, f"peak RSS {peak_kb} KB"
    finally:
        with psycopg.connect(db_engine.libpq_dsn(cfg.database_url), autocommit=True) as conn:
            conn.execute("DELETE FROM log_lines WHERE host = %s", (host,))


def test_api_logs_unreachable_database_is_503(
    client: flask.testing.FlaskClient, cfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import free_port

    dead = cfg.replace(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    assert client.application is not None
    monkeypatch.setitem(client.application.config, "PORTAL_SETTINGS", dead)
    resp = client.get("/api/logs", query_string={"host": "cn07"})
    error = resp.get_json()["error"]
    assert resp.status_code == 503 and error.startswith("PORTAL_DATABASE_URL: cannot connect")
    assert "\n" not in error


def test_quicklook_logs_helper_returns_a_frame(sample: dict[str, object]) -> None:
    """``portal.quicklook.logs`` (plugin API) delegates to ``query_frame``."""
    from portal import quicklook as ql

    df = ql.logs(host=str(sample["a"]), component="l1*", since="3h", limit=10)
    assert list(df.columns) == ["time", "host", "component", "level", "message", "labels"]
    expected = ["beam 1 started", "beam 1 dropped 12 packets", "RFI mask\nfailed"]
    assert list(df["message"]) == expected
    assert str(df["time"].dt.tz) == "UTC"


# -- hostile queries ---------------------------------------------------------------------------
#: A backreference regex PostgreSQL needs about half a second per 100-character line for.
SLOW_REGEX = r"(.*)(.*)(.*)\3\2\1$"


def test_api_logs_query_is_cancelled_at_the_time_limit(cfg: Settings) -> None:
    """A pathological regex over many days gets one 503 sentence at the limit, and PostgreSQL
    runs nothing of it afterwards; ``grep`` alone is plain text, so the same text is harmless."""
    from portal.web.app import create_app

    host = f"slow-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    rows = [
        (now - timedelta(minutes=i), host, "l1", "INFO", "abcdefghij" * 10 + str(i), "{}", host, i)
        for i in range(60)  # about 30 s of regex work: far past the 1 s limit
    ]
    rows.append((now, host, "l1", "INFO", "literal (.*)(.*) text", "{}", host, 99))
    with db_engine.connect_raw(cfg.database_url) as conn, conn.transaction():
        copy_rows(conn, "log_lines", COLUMNS, rows)
    client = create_app(cfg.replace(query_timeout_seconds=1)).test_client()
    params = {"host": host, "grep": SLOW_REGEX, "since": "3650d"}
    assert client.get("/api/logs", query_string=params).get_data() == b""  # text: no such line
    plain = client.get("/api/logs", query_string={"host": host, "grep": "(.*)(.*)"})
    assert messages(plain.get_data(as_text=True).splitlines()) == ["literal (.*)(.*) text"]
    resp = client.get("/api/logs", query_string={**params, "re": "1"})
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.get_json() == {
        "error": "query took longer than 1 s; narrow the range or the pattern"
    }
    deadline = time.monotonic() + 30
    with db_engine.connect_raw(cfg.database_url) as conn:
        while True:
            running = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE %s",
                ("%message ~ %",),
            ).fetchone()
            if running == (0,):
                break
            assert time.monotonic() < deadline, "the cancelled query still runs"
            time.sleep(0.1)


def test_a_search_closed_early_gives_back_a_connection_fit_for_transactions(
    cfg: Settings,
) -> None:
    """A reader that stops after the first line (a client that left, ``head``): the search ran
    outside a transaction, and its pooled connection goes back as it came (not autocommit)."""
    import sqlalchemy as sa

    host = f"early-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    rows = [
        (now - timedelta(seconds=i), host, "l1", "INFO", f"line {i}", "{}", host, i)
        for i in range(20_000)
    ]
    with db_engine.connect_raw(cfg.database_url) as conn, conn.transaction():
        copy_rows(conn, "log_lines", COLUMNS, rows)
    q = lq.LogQuery(hosts=(host,), since=now - timedelta(days=1))
    records = lq.stream(cfg.database_url, q, itersize=100)
    assert next(records).message == "line 19999"  # oldest first
    records.close()
    engine = db_engine.get_engine(cfg.database_url)
    idle = [engine.connect() for _ in range(engine.pool.checkedin())]  # the search's among them
    try:
        for conn in idle:
            assert conn.connection.driver_connection.autocommit is False
            tx = conn.begin()
            conn.execute(sa.text("CREATE TEMP TABLE early_check (x int)"))
            tx.rollback()  # a transaction really was open: the table went with it
            assert (
                conn.execute(sa.text("SELECT to_regclass('pg_temp.early_check')")).scalar() is None
            )
    finally:
        for conn in idle:
            conn.close()
    assert len(list(lq.stream(cfg.database_url, q))) == 20_000
