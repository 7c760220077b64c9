"""The append-only audit log on a real PostgreSQL: triggers, record/query, CLI, webhook, retention,
the migration from 0001's table, and the Audit page rendered in-process.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import flask
import psycopg
import pytest
import sqlalchemy as sa

from portal.auth import audit
from portal.auth.identity import Identity, cli_identity
from portal.db import engine as db_engine
from portal.db import migrate, timeseries
from portal.settings import Settings
from tests.conftest import REPO, portal_cmd, run_portal

APPEND_ONLY = "audit_log is append-only"
MIGRATION = REPO / "portal" / "db" / "migrations" / "versions" / "0002_audit_log.py"


def _who(name: str, role: str = "operator") -> Identity:
    return Identity(name, "user", role, address="10.0.0.7", request_id=f"req-{name}")


def _mark() -> str:
    return uuid.uuid4().hex[:8]


def _refused(conn: psycopg.Connection, stmt: str) -> str:
    with pytest.raises(psycopg.errors.RaiseException) as err:
        conn.execute(stmt)
    return str(err.value.diag.message_primary)


# -- append-only -------------------------------------------------------------------------------
def test_update_delete_truncate_are_refused_also_on_partitions(
    cfg: Settings, database_url: str
) -> None:
    who = _who(f"guard-{_mark()}")
    ident = audit.record(database_url, who, audit.Entry("user.add", "bob", params={"role": "x"}))
    with psycopg.connect(db_engine.libpq_dsn(database_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT tableoid::regclass::text FROM audit_log WHERE id = %s", (ident,)
        ).fetchone()
        assert row is not None and row[0].startswith("audit_log_p")  # a daily partition
        part = row[0]
        for stmt in (
            f"UPDATE audit_log SET outcome = 'forged' WHERE id = {ident}",
            f"DELETE FROM audit_log WHERE id = {ident}",
            "DELETE FROM audit_log WHERE false",  # refused even when no row matches
            "TRUNCATE audit_log",
            f"UPDATE {part} SET reason = 'x' WHERE id = {ident}",
            f"DELETE FROM {part} WHERE id = {ident}",
            f"TRUNCATE {part}",
            "TRUNCATE audit_log_default",
        ):
            message = _refused(conn, stmt)
            assert APPEND_ONLY in message, (stmt, message)
            assert "\n" not in message.strip()
        names = migrate.status(database_url).partitions["audit_log"]
        guarded = {
            r[0]
            for r in conn.execute(
                "SELECT tgrelid::regclass::text FROM pg_trigger "
                "WHERE tgname = 'audit_log_no_truncate'"
            )
        }
        assert set(names) <= guarded, set(names) - guarded
    (kept,) = audit.query(database_url, actor=who.label)
    assert kept.id == ident and kept.outcome == "ok" and kept.params == {"role": "x"}


# -- record and query --------------------------------------------------------------------------
def test_record_then_query_with_filters_and_globs(cfg: Settings, database_url: str) -> None:
    m = _mark()
    alice, al_x, cli = _who(f"al_{m}"), _who(f"alx{m}"), cli_identity("admin")
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    first = audit.record(
        database_url,
        alice,
        audit.Entry(
            "user.role",
            f"bob-{m}",
            params={"role": "admin"},
            reason="on call this week",
            before={"role": "viewer"},
            after={"role": "admin"},
        ),
    )
    audit.record(database_url, al_x, audit.Entry("login", "", outcome="ok"))
    audit.record(database_url, alice, audit.Entry("login.failed", "", outcome="refused"))
    audit.record(database_url, cli, audit.Entry(f"token.add-{m}", f"bob-{m}"))

    mine = audit.query(database_url, actor=f"user:al*{m}", since=t0)
    assert [e.action for e in mine] == ["user.role", "login", "login.failed"]  # oldest first
    e = mine[0]
    assert (e.id, e.actor, e.role, e.source, e.request_id) == (
        first,
        f"user:al_{m}",
        "operator",
        "10.0.0.7",
        f"req-al_{m}",
    )
    assert (e.reason, e.before, e.after) == (
        "on call this week",
        {"role": "viewer"},
        {"role": "admin"},
    )
    # "_" in a pattern is a literal, not LIKE's any-character
    assert {x.actor for x in audit.query(database_url, actor=f"user:al_{m}")} == {alice.label}
    assert {x.actor for x in audit.query(database_url, actor="user:al_*", since=t0)} == {
        alice.label
    }
    assert [x.action for x in audit.query(database_url, action="login.*", since=t0)] == [
        "login.failed"
    ]
    assert len(audit.query(database_url, target=f"bob-{m}")) == 2
    assert len(audit.query(database_url, target=f"bob-?{m}")) == 0
    assert len(audit.query(database_url, target=f"bob-?{m[1:]}")) == 2
    assert [x.actor for x in audit.query(database_url, action=f"token.add-{m}")] == [cli.label]
    assert cli.label.startswith("cli:")
    assert len(audit.query(database_url, actor=f"user:al*{m}", since=t0, limit=2)) == 2
    assert audit.query(database_url, actor=f"user:al*{m}", after_id=mine[-1].id) == []
    later = audit.query(database_url, actor=f"user:al*{m}", after_id=first)
    assert [x.action for x in later] == ["login", "login.failed"]
    assert audit.query(database_url, actor=f"user:al*{m}", until=t0) == []
    newest = audit.query(database_url, actor=f"user:al*{m}", newest_first=True, limit=1)
    assert newest[0].action == "login.failed"
    # a pattern is a bound parameter, never SQL
    assert audit.query(database_url, actor="x' OR '1'='1") == []


def test_record_in_a_psycopg_transaction_is_kept_or_lost_with_it(
    cfg: Settings, database_url: str
) -> None:
    who = _who(f"tx-{_mark()}")
    with db_engine.connect_raw(database_url) as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            audit.record(database_url, who, audit.Entry("x.rolled-back", "t"), conn=conn)
            raise RuntimeError("the caller's work failed")
        with conn.transaction():
            audit.record(database_url, who, audit.Entry("x.kept", "t", params={"n": 1}), conn=conn)
    assert [(e.action, e.params) for e in audit.query(database_url, actor=who.label)] == [
        ("x.kept", {"n": 1})
    ]


def test_text_and_json_lines() -> None:
    e = audit.Logged(
        1,
        dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC),
        "user:alice",
        "admin",
        "10.0.0.7",
        "user.add",
        "bob",
        {"role": "viewer", "a": 1},
        "new colleague",
        "ok",
        None,
        {"role": "viewer"},
        "",
    )
    assert audit.text_line(e) == (
        '2026-12-01T06:00:00.000000Z user:alice admin 10.0.0.7 user.add bob ok "new colleague" '
        '{"a": 1, "role": "viewer"}\n'
    )
    blank = audit.Logged(**{**audit.as_dict(e), "time": e.time, "role": "", "reason": ""})
    assert " user:alice - 10.0.0.7 " in audit.text_line(blank)
    assert " ok - {" in audit.text_line(blank)
    data = json.loads(audit.json_line(e))
    assert data["time"] == "2026-12-01T06:00:00.000000Z" and data["after"] == {"role": "viewer"}
    assert data["params"] == {"role": "viewer", "a": 1} and data["before"] is None


# -- CLI ---------------------------------------------------------------------------------------
def test_portal_audit_text_jsonl_and_bad_input(cfg: Settings, database_url: str) -> None:
    who = _who(f"cli-{_mark()}")
    audit.record(database_url, who, audit.Entry("user.add", "bob", params={"role": "viewer"}))
    audit.record(database_url, who, audit.Entry("user.disable", "bob", reason="left the team"))
    out = run_portal("audit", "--actor", who.label, check=True).stdout.splitlines()
    assert len(out) == 2
    words = out[0].split(" ")
    assert words[1:8] == [who.label, "operator", "10.0.0.7", "user.add", "bob", "ok", "-"]
    assert json.loads(" ".join(words[8:])) == {"role": "viewer"}
    assert out[1].endswith(' user.disable bob ok "left the team" {}')

    jl = run_portal(
        "audit",
        "--actor",
        "user:cli-*",
        "--action",
        "user.d*",
        "--format",
        "jsonl",
        "--since",
        "1h",
        check=True,
    ).stdout.splitlines()
    got = [json.loads(line) for line in jl]
    assert [(g["actor"], g["action"], g["reason"]) for g in got if g["actor"] == who.label] == [
        (who.label, "user.disable", "left the team")
    ]
    limited = run_portal("audit", "--actor", who.label, "--limit", "1", check=True)
    assert limited.stdout.count("\n") == 1 and " user.add " in limited.stdout
    assert (
        run_portal(
            "audit",
            "--actor",
            who.label,
            "--since",
            "2000-01-01",
            "--until",
            "2000-01-02",
            check=True,
        ).stdout
        == ""
    )

    for args, text in [
        (("--since", "yesterday"), "--since 'yesterday' is neither a duration"),
        (("--until", "soon"), "--until 'soon' is neither"),
        (("--since", "1h", "--until", "2h"), "is not after --since"),
        (("--limit", "-1"), "--limit -1 must be 0 or more"),
        (("--follow", "--limit", "3"), "--follow prints until interrupted"),
    ]:
        bad = run_portal("audit", *args)
        assert bad.returncode != 0, args
        assert bad.stderr.strip().splitlines() == [f"error: {bad.stderr.strip()[7:]}"], bad.stderr
        assert text in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_portal_audit_help_imports_no_database_stack(cfg: Settings) -> None:
    script = (
        "import sys\n"
        "from portal.cli import main\n"
        "try:\n"
        "    main(['audit', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "heavy = ('sqlalchemy', 'psycopg', 'dash', 'pandas', 'plotly', 'flask')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "--follow" in result.stdout and "oldest first" in result.stdout
    assert "HEAVY []" in result.stdout, result.stdout


def test_portal_audit_follow_prints_new_entries(cfg: Settings, database_url: str) -> None:
    who = _who(f"follow-{_mark()}")
    audit.record(database_url, who, audit.Entry("before.start", "t"))
    proc = subprocess.Popen(
        portal_cmd("audit", "--follow", "--actor", who.label, "--since", "10m"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout

    def read() -> None:
        for line in out:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert " before.start " in lines.get(timeout=60)
        audit.record(database_url, who, audit.Entry("after.start", "t"))
        assert " after.start " in lines.get(timeout=60)
        assert lines.empty()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()


# -- alerts webhook ----------------------------------------------------------------------------
def test_webhook_writes_one_audit_entry_per_notification(cfg: Settings, database_url: str) -> None:
    from portal.alerts.webhook import blueprint
    from portal.events import bus as events

    app = flask.Flask("test_audit_webhook")
    app.config["PORTAL_SETTINGS"] = cfg
    app.register_blueprint(blueprint)
    token = Identity("alertmanager", "token", "operator", address="127.0.0.1", request_id="r-7")

    @app.before_request
    def _identify() -> None:
        flask.g.portal_identity = token

    m = _mark()
    alert = {
        "status": "firing",
        "labels": {"alertname": f"HostDown{m}", "host": "cn07"},
        "annotations": {"summary": "Host cn07 is down"},
        "startsAt": "2026-12-01T06:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "f00dcafe",
    }
    other = {**alert, "labels": {"alertname": f"DiskFull{m}"}, "fingerprint": "beef"}
    again = {**alert, "fingerprint": "cafe"}  # the same alertname twice: named once
    body = {"version": "4", "receiver": "portal", "status": "firing", "groupKey": "{}:{}"}
    before_events = events.last_id(database_url)
    last = max([e.id for e in audit.query(database_url, newest_first=True, limit=1)] or [0])
    resp = app.test_client().post("/api/alerts", json={**body, "alerts": [alert, other, again]})
    assert resp.status_code == 200, resp.get_json()
    bad = app.test_client().post(
        "/api/alerts", json={**body, "alerts": [{**alert, "fingerprint": ""}]}
    )
    assert bad.status_code == 400
    (entry,) = audit.query(database_url, action="alert.received", after_id=last)
    assert (entry.actor, entry.role, entry.source, entry.request_id) == (
        "token:alertmanager",
        "operator",
        "127.0.0.1",
        "r-7",
    )
    assert entry.target == f"HostDown{m},DiskFull{m}"
    assert entry.params == {"alerts": 3, "status": "firing"} and entry.outcome == "ok"
    assert len(events.history(database_url, ["alert"], since=before_events)) == 3


# -- retention and migration -------------------------------------------------------------------
def test_retention_drops_a_whole_old_partition_while_delete_is_refused(
    cfg: Settings, database_url: str
) -> None:
    eng = db_engine.get_engine(database_url)
    day = dt.date.today() - dt.timedelta(days=30)
    old_time = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    with eng.begin() as conn:
        assert timeseries.ensure_partitions(conn, "audit_log", day, day) == 1
        conn.execute(
            sa.text(
                "INSERT INTO audit_log (time, actor, action, target) "
                "VALUES (:t, 'user:old', 'retention.probe', 'x')"
            ),
            {"t": old_time},
        )
    part = f"audit_log_p{day:%Y_%m_%d}"
    assert part in migrate.status(database_url).partitions["audit_log"]
    with psycopg.connect(db_engine.libpq_dsn(database_url), autocommit=True) as conn:
        assert APPEND_ONLY in _refused(
            conn, f"DELETE FROM audit_log WHERE time < '{day + dt.timedelta(days=1)}'"
        )
        assert APPEND_ONLY in _refused(conn, f"TRUNCATE {part}")
    assert len(audit.query(database_url, action="retention.probe")) == 1

    try:
        migrate.maintain(database_url, {"audit_log": 10}, premake_days=9)
        names = migrate.status(database_url).partitions["audit_log"]
        assert part not in names  # older than retention: dropped whole
        assert audit.query(database_url, action="retention.probe") == []
        ahead = dt.date.today() + dt.timedelta(days=9)
        assert f"audit_log_p{ahead:%Y_%m_%d}" in names
        with eng.connect() as conn:  # partitions made by maintenance are guarded too
            unguarded = conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'audit_log'::regclass AND NOT EXISTS (SELECT 1 FROM "
                    "pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'audit_log_no_truncate')"
                )
            ).all()
        assert unguarded == []
    finally:
        migrate.maintain(database_url, {"audit_log": cfg.audit_retention_days}, premake_days=7)


@pytest.fixture
def fresh_url(pg_server: str) -> Iterator[str]:
    url = f"{pg_server}/obsportal_audit_{uuid.uuid4().hex[:8]}"
    yield url
    db_engine.drop_database(url)


def test_migration_keeps_0001_rows_and_downgrade_restores_the_old_shape(
    cfg: Settings, fresh_url: str
) -> None:
    migrate.upgrade(fresh_url, "0001")
    dsn = db_engine.libpq_dsn(fresh_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO audit_log (time, actor, action, target, details) VALUES "
            "(now() - interval '40 days', 'cli:ops@head', 'host.add', 'cn09', "
            '\'{"role": "compute"}\'),'
            "(now(), 'user:alice', 'login', '', '{}')"
        )
    migrate.upgrade(fresh_url, "0002")
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, actor, action, target, params, role, source, reason, outcome, before, "
            "request_id, tableoid::regclass::text FROM audit_log ORDER BY id"
        ).fetchall()
        assert [r[:11] for r in rows] == [
            (
                1,
                "cli:ops@head",
                "host.add",
                "cn09",
                {"role": "compute"},
                "",
                "",
                "",
                "ok",
                None,
                "",
            ),
            (2, "user:alice", "login", "", {}, "", "", "", "ok", None, ""),
        ]
        assert all(r[11].startswith("audit_log_p") for r in rows)  # each day its own partition
        assert APPEND_ONLY in _refused(conn, "DELETE FROM audit_log")
    new = audit.record(fresh_url, _who("carol"), audit.Entry("user.add", "dave"))
    assert new == 3  # the identity continues after the copied ids
    migrate.downgrade(fresh_url, "0001")
    with psycopg.connect(dsn, autocommit=True) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'audit_log' ORDER BY ordinal_position"
            )
        ]
        assert cols == ["id", "time", "actor", "action", "target", "details", "outcome"]
        kept = conn.execute("SELECT id, actor, details FROM audit_log ORDER BY id").fetchall()
        assert kept == [
            (1, "cli:ops@head", {"role": "compute"}),
            (2, "user:alice", {}),
            (3, "user:carol", {}),
        ]
        conn.execute("DELETE FROM audit_log WHERE id = 3")  # 0001 had no guard
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'audit_log'").fetchone()
        assert kind == ("r",)  # a plain table again
    migrate.upgrade(fresh_url)
    migrate.downgrade(fresh_url, "base")
    migrate.upgrade(fresh_url)
    assert migrate.status(fresh_url).current == migrate.head_revision()


def _migration() -> object:
    spec = importlib.util.spec_from_file_location("portal_migration_0002", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_timescale_and_partman_ddl_of_the_audit_log() -> None:
    mig: object = _migration()
    ddl = "\n".join(mig.create_ddl("timescaledb", 3650, 7))  # type: ignore[attr-defined]
    assert "PARTITION BY" not in ddl and "PRIMARY KEY (id, time)" in ddl
    assert "create_hypertable('audit_log', 'time'" in ddl
    assert "add_retention_policy('audit_log', INTERVAL '3650 days')" in ddl
    assert "compress" not in ddl  # an append-only log is never rewritten into compressed chunks
    assert "BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW" in ddl
    assert "BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log FOR EACH STATEMENT" in ddl
    partman = "\n".join(mig.create_ddl("partman", 3650, 7))  # type: ignore[attr-defined]
    assert "PARTITION BY RANGE (time)" in partman and "partman.create_parent" in partman
    plain = mig.create_ddl("plain", 3650, 7)  # type: ignore[attr-defined]
    assert "CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT" in plain
    # metric tables keep their compression
    assert "add_compression_policy" in "\n".join(
        timeseries.setup_ddl("timescaledb", "metric_samples", 90, 7, "name, host")
    )


# -- the Audit page ----------------------------------------------------------------------------
def test_audit_page_renders_entries_newest_first(cfg: Settings, database_url: str) -> None:
    import dash

    from portal.web.app import create_app

    m = _mark()
    alice, bob = _who(f"page-alice-{m}"), _who(f"page-bob-{m}")
    audit.record(database_url, alice, audit.Entry("user.add", "carol", params={"role": "viewer"}))
    audit.record(database_url, alice, audit.Entry("user.disable", "carol", reason="left"))
    audit.record(database_url, bob, audit.Entry("token.add", "ci"))
    app = create_app(cfg)
    client = app.test_client()
    pages = {p["path"]: p for p in client.get("/api/pages").get_json()}
    assert pages["/audit"]["error"] == "" and pages["/audit"]["name"] == "Audit", pages
    order = {p["path"]: p.get("order") for p in dash.page_registry.values()}
    assert order["/audit"] > order["/logs"]
    page = next(p for p in dash.page_registry.values() if p["path"] == "/audit")
    with app.test_request_context("/audit"):
        shown = json.dumps(
            page["layout"](actor=f"user:page-alice-{m}").to_plotly_json(), default=str
        )
        everyone = json.dumps(
            page["layout"](actor=f"user:page-*-{m}").to_plotly_json(), default=str
        )
    assert f"user:page-alice-{m}" in shown and f"user:page-bob-{m}" not in shown
    assert shown.index("user.disable") < shown.index("user.add")  # newest first
    assert '\\"role\\": \\"viewer\\"' in shown and "audit-tick" in shown
    assert f"user:page-bob-{m}" in everyone
    # the live refresh callback answers with the same filters
    module = sys.modules[page["module"]]
    with app.test_request_context("/audit"):
        fresh = module.refresh(f"user:page-bob-{m}", "", "", 3, {"range": "1h"})
    text = json.dumps(fresh.to_plotly_json(), default=str)
    assert "token.add" in text and "user.add" not in text
