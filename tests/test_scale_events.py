"""The event bus without a global lock: commit-safe order, batches, partitions and retention."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from portal.db import engine as db_engine
from portal.db import migrate
from portal.events import bus as events


def _topic() -> str:
    return f"scale.{uuid.uuid4().hex[:8]}"


def test_an_event_of_an_older_transaction_committed_late_is_delivered_first(
    database_url: str,
) -> None:
    topic = _topic()
    start = events.last_id(database_url)
    older = db_engine.connect_raw(database_url, autocommit=False)
    try:
        older.execute("SELECT pg_current_xact_id()")  # this transaction is now the older one
        newer_id = events.publish(database_url, topic, {"n": "newer"})  # committed at once
        with events.Subscription(database_url, [topic], since=start) as sub:
            # the newer event is stored, but an older transaction may still publish before it
            assert list(sub.events(follow=False)) == []
            older_id = events.publish(database_url, topic, {"n": "older"}, conn=older)
            older.commit()
            assert older_id < newer_id
            got = []
            for ev in sub.events(timeout=30):
                got.append(ev)
                if len(got) == 2:
                    break
    finally:
        older.close()
    assert [e.payload["n"] for e in got] == ["older", "newer"]
    assert [e.id for e in got] == [older_id, newer_id]


def test_a_transaction_open_in_another_database_does_not_hold_delivery_up(
    database_url: str, pg_server: str
) -> None:
    topic = _topic()
    start = events.last_id(database_url)
    with db_engine.connect_raw(f"{pg_server}/postgres", autocommit=False) as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")  # older than the event, still open
        sent = events.publish(database_url, topic, {"n": 1})
        with events.Subscription(database_url, [topic], since=start) as sub:
            got = [e.id for e in sub.events(follow=False)]
        elsewhere.rollback()
    assert got == [sent]


def test_a_rolled_back_publish_leaves_no_event_and_holds_nothing_up(database_url: str) -> None:
    topic = _topic()
    start = events.last_id(database_url)
    with db_engine.connect_raw(database_url, autocommit=False) as conn:
        events.publish(database_url, topic, {"n": "lost"}, conn=conn)
        conn.rollback()
    kept = events.publish(database_url, topic, {"n": "kept"})
    with events.Subscription(database_url, [topic], since=start) as sub:
        got = next(iter(sub.events(timeout=30)))
    assert (got.id, got.payload) == (kept, {"n": "kept"})


def test_publish_many_is_one_transaction_in_order_and_wakes_a_live_follower(
    database_url: str,
) -> None:
    topic = _topic()
    start = events.last_id(database_url)
    got: list[events.Event] = []
    ready = threading.Event()

    def follow() -> None:
        with events.Subscription(database_url, [topic], since=start) as sub:
            ready.set()
            for ev in sub.events(timeout=30):
                got.append(ev)
                if len(got) == 100:
                    return

    reader = threading.Thread(target=follow)
    reader.start()
    assert ready.wait(10)
    ids = events.publish_many(database_url, [(topic, {"n": i}) for i in range(100)])
    reader.join(40)
    assert ids == sorted(ids) and len(set(ids)) == 100
    assert [e.payload["n"] for e in got] == list(range(100))
    assert [e.id for e in got] == ids
    with psycopg.connect(db_engine.libpq_dsn(database_url)) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT xmin::text) FROM events WHERE topic = %s", (topic,)
        ).fetchone()
    assert row == (1,)  # one transaction, one commit


def test_four_concurrent_publishers_every_event_once_in_id_order(database_url: str) -> None:
    topic = _topic()
    start = events.last_id(database_url)

    def produce(k: int) -> None:
        with events.Publisher(database_url, source=f"p{k}") as pub:
            for i in range(50):
                pub.publish(topic, {"k": k, "i": i})

    producers = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    got: list[events.Event] = []
    with events.Subscription(database_url, [topic], since=start) as sub:
        for p in producers:
            p.start()
        for ev in sub.events(timeout=60):
            got.append(ev)
            if len(got) == 200:
                break
    for p in producers:
        p.join(30)
    assert len({(e.payload["k"], e.payload["i"]) for e in got}) == 200
    assert [e.id for e in got] == sorted(e.id for e in got)
    for k in range(4):  # each publisher's own events in the order it published them
        assert [e.payload["i"] for e in got if e.payload["k"] == k] == list(range(50))


@pytest.fixture
def fresh_url(pg_server: str) -> Iterator[str]:
    url = f"{pg_server}/obsportal_evmig_{uuid.uuid4().hex[:8]}"
    yield url
    db_engine.drop_database(url)


def test_migration_keeps_stored_rows_partitions_events_by_day_and_drops_old_days(
    fresh_url: str,
) -> None:
    migrate.upgrade(fresh_url, "0006")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=200)
    with psycopg.connect(db_engine.libpq_dsn(fresh_url)) as conn:
        conn.execute("INSERT INTO events (time, topic) VALUES (%s, 'ancient')", (old,))
        conn.execute("INSERT INTO events (topic) VALUES ('recent')")
        before = conn.execute("SELECT id, topic FROM events ORDER BY id").fetchall()
        conn.execute(
            "INSERT INTO pointings (time, beam, ra_deg, dec_deg, duration_s) "
            "VALUES (now(), 7, 10, 20, 600)"
        )
    migrate.upgrade(fresh_url)
    with psycopg.connect(db_engine.libpq_dsn(fresh_url)) as conn:
        assert conn.execute("SELECT id, topic FROM events ORDER BY id").fetchall() == before
        # pointings stored before the summaries existed are in them
        summed = conn.execute("SELECT beam, n FROM pointing_beam_daily").fetchall()
        assert summed == [(7, 1)]
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'events'").fetchone()
        assert kind == ("p",)  # partitioned
    new = events.publish(fresh_url, "after")
    assert new > before[-1][0]
    backend = migrate.status(fresh_url).backend
    if backend != "partman":
        pytest.skip(f"whole-partition retention is pg_partman's or TimescaleDB's ({backend})")
    with psycopg.connect(db_engine.libpq_dsn(fresh_url)) as conn:
        parts = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'events'::regclass"
            )
        ]
    assert f"events_p{old:%Y_%m_%d}" in parts and "events_default" in parts
    migrate.maintain(fresh_url, {}, premake_days=7)  # pg_partman drops days past retention
    with psycopg.connect(db_engine.libpq_dsn(fresh_url)) as conn:
        topics = [r[0] for r in conn.execute("SELECT topic FROM events ORDER BY id")]
        assert topics == ["recent", "after"]
        left = conn.execute(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass AND c.relname = %s",
            (f"events_p{old:%Y_%m_%d}",),
        ).fetchone()
        assert left == (0,)  # the whole day's partition is gone, not rows deleted
    migrate.downgrade(fresh_url, "0006")
    with psycopg.connect(db_engine.libpq_dsn(fresh_url)) as conn:
        assert [r[0] for r in conn.execute("SELECT topic FROM events ORDER BY id")] == [
            "recent",
            "after",
        ]
        row = conn.execute("INSERT INTO events (topic) VALUES ('plain') RETURNING id").fetchone()
        assert row is not None and row[0] > new


def test_the_horizon_in_plpgsql_keeps_the_id_base_both_ways(fresh_url: str) -> None:
    def publish_and_read(topic: str) -> tuple[int, str, list[int]]:
        sent = events.publish(fresh_url, topic)
        with events.Subscription(fresh_url, [topic], since=0) as sub:
            got = [e.id for e in sub.events(follow=False)]
        with psycopg.connect(db_engine.libpq_dsn(fresh_url)) as conn:
            row = conn.execute(
                "SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
                "WHERE p.proname = 'events_horizon'"
            ).fetchone()
        assert row is not None
        return sent, row[0], got

    migrate.upgrade(fresh_url, "0009")
    first, lang, got = publish_and_read("before")
    assert (lang, got) == ("sql", [first])
    migrate.upgrade(fresh_url)
    second, lang, got = publish_and_read("after")
    assert (lang, got) == ("plpgsql", [second]) and second > first
    migrate.downgrade(fresh_url, "0009")
    third, lang, got = publish_and_read("back")
    assert (lang, got) == ("sql", [third]) and third > second
