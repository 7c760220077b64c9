"""The pipelined publisher: group commit, acknowledged = committed, bounded queue, reconnect."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future

import psycopg
import pytest

from portal.db import engine as db_engine
from portal.errors import PortalError
from portal.events import bus as events

FLUSHER = events.PipelinedPublisher.APPLICATION_NAME


def _topic() -> str:
    return f"pipe.{uuid.uuid4().hex[:8]}"


def _until(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def _stored(url: str, topic: str) -> list[tuple[int, int]]:
    """(id, payload n) of the topic's stored events, in id order."""
    with db_engine.connect_raw(url) as conn:
        rows = conn.execute(
            "SELECT id, (payload->>'n')::int FROM events WHERE topic = %s ORDER BY id", (topic,)
        ).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows]


def _flusher_waits_for_lock(url: str) -> bool:
    with db_engine.connect_raw(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND wait_event_type = 'Lock'",
            (FLUSHER,),
        ).fetchone()
    return bool(row and row[0] == 1)


def test_futures_give_ids_in_submit_order_and_a_live_subscriber_gets_each_once(
    database_url: str,
) -> None:
    topic, per, publishers = _topic(), 1500, 3
    start = events.last_id(database_url)
    acked: dict[int, list[int]] = {}

    def produce(k: int) -> None:
        with events.PipelinedPublisher(database_url, source=f"p{k}", max_batch=100) as pub:
            futures = [pub.publish_async(topic, {"n": k * per + i}) for i in range(per)]
            assert pub.flush(60)
            acked[k] = [f.result() for f in futures]

    producers = [threading.Thread(target=produce, args=(k,)) for k in range(publishers)]
    got: list[events.Event] = []
    with events.Subscription(database_url, [topic], since=start) as sub:
        for p in producers:
            p.start()
        for ev in sub.events(timeout=120):
            got.append(ev)
            if len(got) == per * publishers:
                break
    for p in producers:
        p.join(60)
    assert sorted(acked) == list(range(publishers))
    for ids in acked.values():
        assert ids == sorted(ids) and len(set(ids)) == per  # submit order
    every = {i for ids in acked.values() for i in ids}
    assert len(every) == per * publishers
    assert [e.id for e in got] == sorted(every)  # each once, in id order, nothing else
    by_id = {e.id: e.payload["n"] for e in got}
    for k, ids in acked.items():
        assert [by_id[i] for i in ids] == [k * per + i for i in range(per)]
        assert {e.source for e in got if e.id in set(ids)} == {f"p{k}"}


def test_flush_commits_what_lingers_and_close_refuses_new_events(database_url: str) -> None:
    topic = _topic()
    pub = events.PipelinedPublisher(database_url, max_batch=1000, linger_s=600)
    try:
        futures = [pub.publish_async(topic, {"n": i}) for i in range(10)]
        assert not any(f.done() for f in futures)  # lingering for a fuller batch
        assert not futures[0].cancel()  # may already be in a transaction
        assert pub.flush(60)
        assert all(f.done() for f in futures)
        ids = [f.result() for f in futures]
        assert _stored(database_url, topic) == list(zip(ids, range(10), strict=True))
        last = pub.publish_async(topic, {"n": 10})
    finally:
        pub.close()
    assert last.done() and last.result() > ids[-1]  # close flushed first
    with pytest.raises(PortalError, match="closed"):
        pub.publish_async(topic, {"n": 11})
    assert len(_stored(database_url, topic)) == 11


def test_a_bad_topic_or_payload_raises_at_once(database_url: str) -> None:
    topic = _topic()
    with events.PipelinedPublisher(database_url) as pub:
        with pytest.raises(PortalError, match="topic 'has space'"):
            pub.publish_async("has space", {"n": 0})
        with pytest.raises(PortalError, match="not JSON"):
            pub.publish_async(topic, {"n": object()})
        assert pub.queued == 0
        good = pub.publish_async(topic, {"n": 1})
        assert pub.flush(60)
    assert _stored(database_url, topic) == [(good.result(), 1)]


def test_a_failed_commit_fails_its_whole_batch_and_the_next_batch_reconnects(
    database_url: str,
) -> None:
    topic = _topic()
    # a batch is exactly 5 events: the flusher lingers until it has them
    with events.PipelinedPublisher(database_url, max_batch=5, linger_s=600) as pub:
        before = [pub.publish_async(topic, {"n": i}) for i in range(5)]
        ok_before = [f.result(timeout=60) for f in before]
        with db_engine.connect_raw(database_url) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s",
                (FLUSHER,),
            ).fetchall()
        assert killed == [(True,)]
        lost = [pub.publish_async(topic, {"n": i}) for i in range(5, 10)]
        for f in lost:
            err = f.exception(timeout=60)
            assert isinstance(err, events.PublishFailed)
            assert str(err).startswith("5 events not acknowledged: ")
            assert isinstance(err.__cause__, psycopg.OperationalError)
        after = [pub.publish_async(topic, {"n": i}) for i in range(10, 15)]
        ok_after = [f.result(timeout=60) for f in after]
    acked = list(zip(ok_before + ok_after, [*range(5), *range(10, 15)], strict=True))
    # every acknowledged event is stored; the failed batch never reached the server
    assert _stored(database_url, topic) == acked


def test_publish_async_blocks_while_the_queue_is_full(database_url: str) -> None:
    topic, bound, batch = _topic(), 20, 8
    locker = db_engine.connect_raw(database_url, autocommit=False)
    pub = events.PipelinedPublisher(database_url, max_batch=batch, max_queued=bound)
    blocked: list[Future[int]] = []
    try:
        locker.execute("LOCK TABLE events IN EXCLUSIVE MODE")  # every INSERT now waits
        first = pub.publish_async(topic, {"n": 0})
        assert _until(lambda: pub.queued == 0 and _flusher_waits_for_lock(database_url))
        queued = [pub.publish_async(topic, {"n": i}) for i in range(1, bound + 1)]
        assert pub.queued == bound
        extra = threading.Thread(
            target=lambda: blocked.append(pub.publish_async(topic, {"n": bound + 1}))
        )
        extra.start()
        extra.join(0.5)
        assert extra.is_alive() and not blocked  # back-pressure: waits for room
        assert pub.queued == bound
        assert not first.done()
        locker.rollback()  # the flusher's INSERT goes on
        extra.join(60)
        assert not extra.is_alive()
        assert pub.flush(60)
    finally:
        locker.close()
        pub.close()
    ids = [f.result() for f in [first, *queued, *blocked]]
    assert len(ids) == bound + 2 and ids == sorted(ids)
    assert [n for _, n in _stored(database_url, topic)] == list(range(bound + 2))
    with db_engine.connect_raw(database_url) as conn:
        sizes = [
            int(r[0])
            for r in conn.execute(
                "SELECT count(*) FROM events WHERE topic = %s GROUP BY xmin::text", (topic,)
            )
        ]
    # group commit: the first event alone, then the queued ones in batches of at most 8
    assert max(sizes) == batch and len(sizes) <= 2 + math.ceil(bound / batch)
