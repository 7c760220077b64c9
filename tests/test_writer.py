"""The write path: batched COPY, spool during an outage, no duplicates on replay."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import psycopg

from portal.db import engine as db_engine
from portal.db.spool import Spool
from portal.db.writer import WritePath


def _rows(n: int, host: str, start: dt.datetime) -> list[tuple]:
    return [
        (start + dt.timedelta(seconds=i), host, "c", "test_metric", {"k": "v"}, float(i))
        for i in range(n)
    ]


def _count(url: str, host: str) -> tuple[int, int]:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT time) FROM metric_samples WHERE host = %s", (host,)
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def test_batches_reach_the_table_and_duplicates_collapse(database_url: str, tmp_path: Path) -> None:
    host = f"w-{uuid.uuid4().hex[:6]}"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    w = WritePath(database_url, "metric_samples", spool_dir=tmp_path, batch_rows=1000)
    rows = _rows(5000, host, start)
    w.write_many(rows)
    assert w.flush(30)
    # a crash after commit but before the spool was cleared: the same batch is replayed
    w.spool.append(w._jsonable(rows[:100] + rows[:3]))
    assert w.flush(30)
    w.close()
    assert _count(database_url, host) == (5000, 5000)


def test_durable_mode_survives_without_the_flusher(database_url: str, tmp_path: Path) -> None:
    host = f"d-{uuid.uuid4().hex[:6]}"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    dead = "postgresql://postgres@127.0.0.1:1/none"
    w = WritePath(dead, "metric_samples", spool_dir=tmp_path, durable=True)
    w.write_many(_rows(300, host, start))  # on disk once this returns, like before a kill -9
    assert not w.spool.empty()
    w2 = WritePath(database_url, "metric_samples", spool_dir=tmp_path, flush_seconds=0.05)
    assert w2.flush(30)
    w2.close()
    w.close(timeout=0.5)
    assert _count(database_url, host) == (300, 300)


def test_outage_spools_then_replays_in_order(
    pg_server: str, database_url: str, tmp_path: Path
) -> None:
    # point the writer at a port where nothing listens: every batch must spool
    host = f"o-{uuid.uuid4().hex[:6]}"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    dead = "postgresql://postgres@127.0.0.1:1/none"
    w = WritePath(dead, "metric_samples", spool_dir=tmp_path, batch_rows=100, flush_seconds=0.05)
    w.write_many(_rows(1000, host, start))
    assert not w.flush(1.0)
    w.close(timeout=1)
    spool = Spool(tmp_path / "metric_samples")
    assert spool.size_bytes() > 0
    assert _count(database_url, host) == (0, 0)
    # the database "returns": a writer on the real URL replays the spool, twice over
    w2 = WritePath(database_url, "metric_samples", spool_dir=tmp_path, flush_seconds=0.05)
    assert w2.flush(30)
    w2.close()
    assert spool.empty()
    assert _count(database_url, host) == (1000, 1000)


def test_torn_spool_record_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([[1, "a"]])
    spool.append([[2, "b"]])
    spool.close()
    seg = spool.segments()[0]
    seg.write_bytes(seg.read_bytes()[:-7])  # crash mid-write of the last record
    records = [r for _, recs in spool.oldest() for r in recs]
    assert [r.rows for r in records] == [[[1, "a"]]]


def test_unique_keyed_table_replays_by_plain_copy_and_still_dedupes(
    database_url: str, tmp_path: Path
) -> None:
    source = f"test:{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    rows = [(now, "h", "c", "INFO", f"line {i}", {}, source, i) for i in range(50)]
    w = WritePath(database_url, "log_lines", spool_dir=tmp_path, durable=True)
    w.write_many(rows)
    w.write_many(rows[10:20])  # re-read after a crash: same (source, seq, time) keys
    assert w.flush(30)
    w.close()
    with psycopg.connect(db_engine.libpq_dsn(database_url)) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT seq) FROM log_lines WHERE source = %s", (source,)
        ).fetchone()
    assert row == (50, 50)


def test_durable_batches_go_from_memory_and_a_foreign_record_from_disk(
    database_url: str, tmp_path: Path
) -> None:
    """What a durable writer spooled itself is sent from memory, at most ``queue_rows`` rows
    kept; a record another hand appended to the same segment is still delivered."""
    host = f"m-{uuid.uuid4().hex[:6]}"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # plain values (a datetime would come back from the spool's JSON as text: sent from disk)
    rows = [(r[0].isoformat(), *r[1:]) for r in _rows(600, host, start)]
    dead = "postgresql://postgres@127.0.0.1:1/none"

    def writer(name: str) -> WritePath:
        return WritePath(
            dead, "metric_samples", spool_dir=tmp_path, name=name, durable=True, queue_rows=250
        )

    bounded = writer("bounded")
    bounded.write_many(rows[:100])
    bounded.write_many(rows[100:200])
    assert bounded._memo_rows == 200  # the database is away: nothing was sent
    bounded.write_many(rows[200:300])  # beyond queue_rows: read back from disk
    bounded.write_many(rows[300:400])
    assert 100 <= bounded._memo_rows <= 250
    bounded.url = database_url  # the database "returns"
    assert bounded.flush(30)
    bounded.close()
    assert bounded._memo_rows == 0 and bounded.spool.empty()
    assert _count(database_url, host) == (400, 400)

    foreign = writer("foreign")
    foreign._stop = True  # no flusher: the next two appends go to one open segment
    foreign._wake.set()
    foreign._thread.join(5)
    foreign.write_many(rows[400:500])
    foreign.spool.append(foreign._jsonable(rows[500:600]))  # not through the writer
    foreign.url = database_url
    assert foreign._replay()
    foreign.close(timeout=0.1)
    assert foreign._memo_rows == 0 and foreign.spool.empty()
    assert _count(database_url, host) == (600, 600)


def test_a_durable_writer_sends_its_memory_as_it_spooled_it(
    database_url: str, tmp_path: Path
) -> None:
    """Rows sent from memory are the rows a replay from disk would send: a later reader of
    the spool finds nothing left, and the table holds each row once with its values."""
    source = f"test:{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp = now.isoformat()
    rows = [
        (stamp, "h", "c", "INFO", f"line {i} \u00e9", '{"file": "/x"}', source, i)
        for i in range(3000)
    ]
    w = WritePath(database_url, "log_lines", spool_dir=tmp_path, durable=True)
    for k in range(0, 3000, 500):
        w.write_many(rows[k : k + 500])
    assert w.flush(30)
    w.close()
    assert Spool(tmp_path / "log_lines").empty()
    with psycopg.connect(db_engine.libpq_dsn(database_url)) as conn:
        got = conn.execute(
            "SELECT count(*), count(DISTINCT seq), min(message), max(time) FROM log_lines "
            "WHERE source = %s",
            (source,),
        ).fetchone()
    assert got == (3000, 3000, "line 0 \u00e9", now)
