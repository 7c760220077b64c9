"""Rows the database refuses are set aside one by one; every other row is stored.

The write path makes rows storable (no NUL or lone surrogate in text, no NaN in JSON) and,
when the database still refuses a batch because of its data, bisects it until only the
refused rows are left. A database that cannot take rows at all keeps them spooled.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from portal.db import engine as db_engine
from portal.db import migrate
from portal.db.writer import WritePath, rejected_records
from tests.conftest import run_portal


def rejected_count(table: str, writer: str) -> float:
    labels = {"table": table, "writer": writer}
    return REGISTRY.get_sample_value("portal_write_rejected_rows_total", labels) or 0.0


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        return conn.execute(sql, args).fetchall()


Case = tuple[str, Callable[[str, dt.datetime, int], tuple[Any, ...]], tuple[Any, ...], str]


def _metric(tag: str, now: dt.datetime, i: int) -> tuple[Any, ...]:
    return (now + dt.timedelta(seconds=i), tag, "c", "m", {"k": "v"}, float(i))


def _log(tag: str, now: dt.datetime, i: int) -> tuple[Any, ...]:
    return (now, "h", "c", "INFO", f"line {i}", {}, tag, i)


def _pointing(tag: str, now: dt.datetime, i: int) -> tuple[Any, ...]:
    return (now + dt.timedelta(seconds=i), i, 10.0, 20.0, 60.0, 0.1, 1, 5.0, 0, {"tag": tag})


def _beam_event(tag: str, now: dt.datetime, i: int) -> tuple[Any, ...]:
    return (now + dt.timedelta(seconds=i), i, "restart", 1.0, {"tag": tag})


# one table each: a generator of good rows, one refused row, and a query counting good rows
CASES: dict[str, Case] = {
    "metric_samples": (
        "metric_samples",
        _metric,
        # a value that is not a number: invalid_text_representation (22P02)
        (dt.datetime.now(dt.UTC), "{tag}", "c", "m", {"k": "v"}, "not-a-number"),
        "SELECT count(*) FROM metric_samples WHERE host = %s",
    ),
    "log_lines": (
        "log_lines",
        _log,
        # a seq beyond bigint: numeric_value_out_of_range (22003)
        (dt.datetime.now(dt.UTC), "h", "c", "INFO", "too far", {}, "{tag}", 2**70),
        "SELECT count(*) FROM log_lines WHERE source = %s",
    ),
    "pointings": (
        "pointings",
        _pointing,
        # no beam: not_null_violation (23502)
        (dt.datetime.now(dt.UTC), None, 1.0, 2.0, 3.0, 0.1, 1, 5.0, 0, {"tag": "{tag}"}),
        "SELECT count(*) FROM pointings WHERE flags->>'tag' = %s",
    ),
    "beam_events": (
        "beam_events",
        _beam_event,
        # no kind: not_null_violation (23502)
        (dt.datetime.now(dt.UTC), 1, None, 1.0, {"tag": "{tag}"}),
        "SELECT count(*) FROM beam_events WHERE payload->>'tag' = %s",
    ),
}


def _fill(value: Any, tag: str) -> Any:
    if value == "{tag}":
        return tag
    if isinstance(value, dict):
        return {k: _fill(v, tag) for k, v in value.items()}
    return value


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "durable"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_one_refused_row_is_set_aside_and_every_other_row_stored(
    database_url: str, tmp_path: Path, case: str, durable: bool
) -> None:
    table, good, bad, count_sql = CASES[case]
    tag = f"r-{uuid.uuid4().hex[:8]}"
    name = f"refused-{tag}"
    now = dt.datetime.now(dt.UTC)  # microseconds: another run's keys never collide
    rows = [good(tag, now, i) for i in range(999)]
    refused = tuple(_fill(v, tag) for v in bad)
    rows.insert(613, refused)
    before = rejected_count(table, name)
    w = WritePath(
        database_url, table, spool_dir=tmp_path, name=name, batch_rows=5000, durable=durable
    )
    w.write_many(rows)
    assert w.flush(60), f"not delivered: {w.last_error}"
    w.close()
    assert query(database_url, count_sql, tag) == [(999,)]
    assert rejected_count(table, name) - before == 1
    records = list(rejected_records(tmp_path))
    assert len(records) == 1
    record = records[0]
    assert (record["table"], record["writer"]) == (table, name)
    assert record["columns"] == w.columns
    assert len(record["rows"]) == 1 and record["error"]
    assert w.spool.empty()


def test_rows_from_any_producer_are_made_storable(database_url: str, tmp_path: Path) -> None:
    """NUL, lone surrogates and NaN/Infinity reach the write path without a parser before it."""
    source = f"s-{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    rows = [
        (now, "h", "c", "INFO", "x \ud800 y", {"k": "\ud800", "n": float("nan")}, source, 0),
        (now, "h", "c", "INFO", "nul \x00 here", '{"r": NaN, "s": "\\ud800"}', source, 1),
        (now, "h\udfff", "c", "INFO", "ok", '{"i": -Infinity, "z": "\\u0000"}', source, 2),
    ]
    rows += [(now, "h", "c", "INFO", f"good {i}", {}, source, 10 + i) for i in range(100)]
    name = f"storable-{source}"
    before = rejected_count("log_lines", name)
    w = WritePath(database_url, "log_lines", spool_dir=tmp_path, name=name, durable=True)
    w.write_many(rows)
    assert w.flush(60), f"not delivered: {w.last_error}"
    w.close()
    got = query(
        database_url,
        "SELECT seq, host, message, labels FROM log_lines WHERE source = %s ORDER BY seq",
        source,
    )
    assert len(got) == 103
    assert got[0] == (0, "h", "x \ufffd y", {"k": "\ufffd", "n": "NaN"})
    assert got[1] == (1, "h", "nul \ufffd here", {"r": "NaN", "s": "\ufffd"})
    assert got[2] == (2, "h\ufffd", "ok", {"i": "-Infinity", "z": "\ufffd"})
    assert rejected_count("log_lines", name) == before
    assert not list(rejected_records(tmp_path))


def test_a_database_that_cannot_take_rows_keeps_them_spooled(
    pg_server: str, tmp_path: Path
) -> None:
    """No table yet (a schema error, not bad data): nothing is set aside, all arrives later."""
    url = f"{pg_server}/obsportal_refused_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_engine.libpq_dsn(f"{pg_server}/postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {url.rsplit('/', 1)[1]}")
    source = f"s-{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    rows = [(now, "h", "c", "INFO", f"line {i}", {}, source, i) for i in range(200)]
    name = f"noschema-{source}"
    before = rejected_count("log_lines", name)
    w = WritePath(url, "log_lines", spool_dir=tmp_path, name=name, durable=True)
    try:
        w.write_many(rows)
        assert not w.flush(1.0)  # undefined_table: still spooled, not refused
        assert w.last_error and "log_lines" in w.last_error
        assert not list(rejected_records(tmp_path))
        migrate.upgrade(url)
        assert w.flush(60), f"not delivered: {w.last_error}"
        w.close()
        assert query(url, "SELECT count(*) FROM log_lines WHERE source = %s", source) == [(200,)]
        assert rejected_count("log_lines", name) == before
    finally:
        w.close(timeout=1)
        db_engine.dispose_all()
        db_engine.drop_database(url)


def test_portal_logs_rejected_prints_set_aside_lines_with_their_error(
    database_url: str, tmp_path: Path
) -> None:
    source = f"s-{uuid.uuid4().hex[:8]}"
    now = dt.datetime(2026, 12, 1, 6, 50, 38, 123000, tzinfo=dt.UTC)
    rows = [(now, "cn07", "l1-beam", "INFO", f"fine {i}", {}, source, i) for i in range(20)]
    rows.append((now, "cn07", "l1-beam", "ERROR", "seq too far", {}, source, 2**70))
    spool = tmp_path / "var" / "spool"
    w = WritePath(database_url, "log_lines", spool_dir=spool, name="logship", durable=True)
    w.write_many(rows)
    assert w.flush(60), f"not delivered: {w.last_error}"
    w.close()
    env = {"PORTAL_DATABASE_URL": database_url, "PORTAL_DATA_DIR": str(tmp_path / "var")}
    text = run_portal("logs", "--rejected", env=env, check=True).stdout.splitlines()
    assert len(text) == 1
    line, error = text[0].split("\t")
    assert line == "2026-12-01T06:50:38.123000Z cn07 l1-beam ERROR seq too far"
    assert "out of range for type bigint" in error
    jsonl = run_portal("logs", "--rejected", "--format", "jsonl", env=env, check=True).stdout
    (record,) = [json.loads(x) for x in jsonl.splitlines()]
    assert (record["message"], record["seq"], record["writer"]) == ("seq too far", 2**70, "logship")
    assert "out of range" in record["error"] and record["rejected_at"]
