"""Event bus: durable rows in ``events`` plus ``LISTEN/NOTIFY`` wake-ups.

Publishers take no lock: an event's id is its transaction's id shifted left plus a counter
(``events_next_id()``, migration 0007), so ids sort like transactions. A subscriber reads only
ids below ``events_horizon()``, the oldest transaction still running: everything older has
finished, so no smaller id can commit after the subscriber moved past it. Delivery is in id
order and at-least-once: a consumer stores its cursor after handling. An event waits for
every older transaction of its database to end, so a long writing transaction there delays
delivery (never loses it); transactions in the cluster's other databases do not.

Publishing rates: one commit per event tops out at about 2,800/s here (4 publishers);
``publish_many`` and ``PipelinedPublisher`` (group commit, as Kafka's producer) share one commit
among many events.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from portal.db.engine import connect_raw
from portal.errors import DatabaseUnavailable, PortalError

CHANNEL = "portal_events"
#: Many events in one statement (one transaction), inserted in the order of the arrays, so their
#: ids (a counter within the transaction) ascend in that order. The arrays go in binary (``%b``):
#: as text, psycopg escapes every element with a regular expression (24 against 3.4 us of client
#: CPU an event here).
_INSERT = (
    "INSERT INTO events (topic, source, payload) "
    "SELECT t, s, p::jsonb FROM unnest(%b::text[], %b::text[], %b::text[]) WITH ORDINALITY "
    "AS u(t, s, p, n) ORDER BY n RETURNING id"
)
#: While events wait behind an older transaction (whose end sends no NOTIFY), look again after
#: this long, doubling up to ``PENDING_POLL_MAX_S`` while they keep waiting.
PENDING_POLL_S = 0.002
PENDING_POLL_MAX_S = 0.25
#: Events a subscriber reads per statement.
FETCH_LIMIT = 500
#: A subscriber's read: up to FETCH_LIMIT events after its cursor below the horizon, in id order,
#: then one row of NULLs if committed events wait at or above the horizon.
_FETCH = (
    "WITH h AS MATERIALIZED (SELECT events_horizon() AS h), "
    "batch AS (SELECT id, time, topic, source, payload FROM events "
    "WHERE id > %s AND id < (SELECT h FROM h) AND {cond} ORDER BY id LIMIT %s) "
    "SELECT * FROM (SELECT id, time, topic, source, payload, 0 AS k FROM batch "
    "UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, 1 WHERE EXISTS (SELECT 1 FROM events "
    "WHERE id >= (SELECT h FROM h) AND id > %s AND {cond})) r ORDER BY k, id"
)


@dataclass(frozen=True)
class Event:
    id: int
    time: datetime
    topic: str
    source: str
    payload: dict[str, Any]

    def as_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "time": self.time.isoformat(),
                "topic": self.topic,
                "source": self.source,
                "payload": self.payload,
            },
            default=str,
        )


def _json_default(value: object) -> str:
    """Times, dates, paths and UUIDs become strings; anything else is a caller's mistake."""
    from datetime import date
    from pathlib import PurePath
    from uuid import UUID

    if isinstance(value, date | PurePath | UUID):
        return value.isoformat() if isinstance(value, date) else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _check_topic(topic: str) -> None:
    if not topic or len(topic) > 200 or any(c.isspace() for c in topic):
        raise PortalError(f"event topic {topic!r} must be 1-200 characters without spaces")


def _body(topic: str, payload: dict[str, Any] | None) -> str:
    _check_topic(topic)
    try:
        return json.dumps(payload or {}, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise PortalError(f"event payload for {topic!r} is not JSON: {exc}") from None


def _store(conn: psycopg.Connection, rows: list[tuple[str, str, str]]) -> list[int]:
    """Insert the rows and wake subscribers.

    On a connection of its own (autocommit, no transaction open) the wake-up is a transaction
    of its own after the commit: a NOTIFY inside the publishing transaction holds PostgreSQL's
    one notification-queue lock until its commit is on disk, which serialised every publisher
    again (about 370/s here, against 1,700/s without). Inside a caller's transaction it goes
    with that transaction, so subscribers hear of nothing that is rolled back.
    """
    topics = [r[0] for r in rows]
    columns = (topics, [r[1] for r in rows], [r[2] for r in rows])
    ids = sorted(int(r[0]) for r in conn.execute(_INSERT, columns).fetchall())
    for topic in dict.fromkeys(topics):  # one wake-up per topic, not per event
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, topic))
    return ids


def publish(
    url: str,
    topic: str,
    payload: dict[str, Any] | None = None,
    source: str = "",
    conn: psycopg.Connection | None = None,
) -> int:
    """Store an event and wake subscribers; returns its id (no lock: see the module doc)."""
    return publish_many(url, [(topic, payload)], source, conn)[0]


def publish_many(
    url: str,
    events: Sequence[tuple[str, dict[str, Any] | None]],
    source: str = "",
    conn: psycopg.Connection | None = None,
) -> list[int]:
    """Store several ``(topic, payload)`` events in one transaction (one commit, one disk
    flush: the way to publish thousands a second); returns their ids in the same order."""
    if not events:
        return []
    rows = [(topic, source, _body(topic, payload)) for topic, payload in events]
    own = conn is None
    conn = conn or connect_raw(url, autocommit=True)
    try:
        return _store(conn, rows)
    finally:
        if own:
            conn.close()


class Publisher:
    """A connection kept for many ``publish`` calls (a busy component): no connect per event."""

    def __init__(self, url: str, source: str = "") -> None:
        self.url, self.source = url, source
        self._conn: psycopg.Connection | None = None

    def publish(self, topic: str, payload: dict[str, Any] | None = None) -> int:
        if self._conn is None or self._conn.closed:
            self._conn = connect_raw(self.url, autocommit=True)
        try:
            return publish(self.url, topic, payload, self.source, conn=self._conn)
        except psycopg.OperationalError:
            self._conn.close()  # the next call connects afresh
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PublishFailed(PortalError):
    """A pipelined event was not acknowledged: its batch's transaction failed (the cause is
    chained). When the connection dropped mid-commit the events may still be stored."""


class PipelinedPublisher:
    """Group commit, as Kafka's producer: ``publish_async`` queues in process; one flusher
    thread stores whatever accumulated in ONE transaction while the next batch accumulates.

    Durability: a future resolves to the event's id only after its transaction committed, so
    acknowledged = committed; a crash loses only events not yet acknowledged. Ids ascend in
    submit order (one flusher, batches in order, ids in array order within a batch). Memory is
    bounded: ``publish_async`` blocks while ``max_queued`` events wait for a transaction (plus at
    most ``max_batch`` in the one in flight); a publisher faster than the database keeps the
    queue full, so an event then waits about ``max_queued`` / rate: keep it small. ``linger_s``
    > 0 lets a batch wait that long for more events (fewer, larger commits; more latency);
    ``flush`` skips the linger.
    """

    #: Shown in ``pg_stat_activity`` so an operator can tell the flusher's backend apart.
    APPLICATION_NAME = "obsportal-publisher"
    #: Defaults: small, because a publisher faster than the database keeps the queue full and an
    #: event then waits for about two transactions; 20 events already share one commit.
    MAX_BATCH = 20
    MAX_QUEUED = 20

    def __init__(
        self,
        url: str,
        source: str = "",
        max_batch: int = MAX_BATCH,
        max_queued: int = MAX_QUEUED,
        linger_s: float = 0.0,
    ) -> None:
        if max_batch < 1 or max_queued < 1 or linger_s < 0:
            raise PortalError("max_batch and max_queued must be >= 1 and linger_s >= 0")
        self.url, self.source = url, source
        self.max_batch, self.max_queued, self.linger_s = max_batch, max_queued, linger_s
        self._queue: deque[tuple[str, str, Future[int]]] = deque()
        self._cond = threading.Condition()
        self._last: Future[int] | None = None  # the newest queued event's future
        self._urgent = 0  # callers in ``flush``: no linger meanwhile
        self._closed = False
        self._conn: psycopg.Connection | None = None
        self._flusher = threading.Thread(target=self._run, name="event-flusher", daemon=True)
        self._flusher.start()

    @property
    def queued(self) -> int:
        """Events waiting for a transaction (never more than ``max_queued``)."""
        return len(self._queue)

    def publish_async(self, topic: str, payload: dict[str, Any] | None = None) -> Future[int]:
        """Queue an event; the future gives its id once committed, or raises ``PublishFailed``.

        A bad topic or payload raises here (``PortalError``), not later in the flusher. The
        future cannot be cancelled: the event may already be in a transaction. Its callbacks run
        in the flusher thread: keep them short and do not publish from them (the queue may be
        full, and only the flusher empties it).
        """
        body = _body(topic, payload)
        future: Future[int] = Future()
        future.set_running_or_notify_cancel()
        with self._cond:
            while len(self._queue) >= self.max_queued and not self._closed:
                self._cond.wait()  # back-pressure: the flusher makes room
            if self._closed:
                raise PortalError("the event publisher is closed")
            self._queue.append((topic, body, future))
            self._last = future
            self._cond.notify_all()
        return future

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is committed (or failed); False on timeout."""
        with self._cond:
            last = self._last
            self._urgent += 1
            self._cond.notify_all()
        try:
            return last is None or not wait_futures([last], timeout).not_done
        finally:
            with self._cond:
                self._urgent -= 1

    def close(self) -> None:
        """Refuse new events, commit the queued ones, stop the flusher, close the connection."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._flusher.join()
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> PipelinedPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self) -> list[tuple[str, str, Future[int]]]:
        """The next batch, oldest first; empty once closed and drained."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            deadline = time.monotonic() + self.linger_s
            while len(self._queue) < self.max_batch and not self._closed and not self._urgent:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self._cond.notify_all()  # room for blocked publishers
            return batch

    def _run(self) -> None:
        while batch := self._take():
            try:
                ids = self._commit([(topic, self.source, body) for topic, body, _ in batch])
            except Exception as exc:  # every future of the batch fails; none is dropped
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                for _, _, future in batch:
                    err = PublishFailed(f"{len(batch)} events not acknowledged: {first}")
                    err.__cause__ = exc
                    future.set_exception(err)
            else:
                for (_, _, future), event_id in zip(batch, ids, strict=True):
                    future.set_result(event_id)

    def _commit(self, rows: list[tuple[str, str, str]]) -> list[int]:
        """One transaction for the batch; a lost connection is replaced for the next one."""
        if self._conn is None or self._conn.closed:
            self._conn = connect_raw(self.url, autocommit=True)
            self._conn.execute(
                "SELECT set_config('application_name', %s, false)", (self.APPLICATION_NAME,)
            )
        try:
            return _store(self._conn, rows)
        except psycopg.OperationalError:
            self._conn.close()
            raise


def topic_filter(topics: Sequence[str]) -> tuple[str, list[str]]:
    """SQL condition for topic patterns: exact names, or ``*`` as a wildcard (``ops.*``)."""
    if not topics or "*" in topics:
        return "TRUE", []
    likes = [
        t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
        for t in topics
    ]
    return "(" + " OR ".join(["topic LIKE %s"] * len(likes)) + ")", likes


def history(
    url: str,
    topics: Sequence[str] = (),
    since: int = 0,
    limit: int = 100,
    newest_first: bool = False,
) -> list[Event]:
    """Stored events after ``since`` (for pages and ``tail`` without ``--follow``)."""
    cond, params = topic_filter(topics)
    order = "DESC" if newest_first else "ASC"
    with connect_raw(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT id, time, topic, source, payload FROM events "
            f"WHERE id > %s AND {cond} ORDER BY id {order} LIMIT %s",
            [since, *params, limit],
        )
        return [Event(**r) for r in cur.fetchall()]


def last_id(url: str) -> int:
    with connect_raw(url) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        return int(row[0]) if row else 0


class Subscription:
    """Iterate events matching ``topics``: missed ones since the cursor first, then live ones.

    With ``name``, the cursor is stored in ``event_cursors`` each time the consumer asks for
    the next event (so the previous one counts as handled): a restart resumes where it left.
    """

    def __init__(
        self,
        url: str,
        topics: Sequence[str] = (),
        since: int | None = None,
        name: str | None = None,
        poll_seconds: float = 5.0,
    ) -> None:
        self.url, self.topics, self.name = url, list(topics), name
        self.poll_seconds = poll_seconds
        self._conn = self._connect()
        stored = self._load_cursor() if name else None
        self.cursor = since if since is not None else (stored if stored is not None else 0)
        self._cond, self._params = topic_filter(self.topics)
        self.reconnects = 0

    def _connect(self) -> psycopg.Connection:
        conn = connect_raw(self.url, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")  # before the first read: no wake-up is missed
        return conn

    def _reconnect(self, deadline: float | None) -> bool:
        """After the database went away: retry with back-off; False if ``deadline`` passed."""
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
        delay = 0.2
        while deadline is None or time.monotonic() < deadline:
            try:
                self._conn = self._connect()
            except (DatabaseUnavailable, psycopg.OperationalError):
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.reconnects += 1
            self.commit()  # the cursor lives in memory meanwhile; store it again
            return True
        return False

    def _load_cursor(self) -> int | None:
        row = self._conn.execute(
            "SELECT last_id FROM event_cursors WHERE name = %s", (self.name,)
        ).fetchone()
        return int(row[0]) if row else None

    def commit(self) -> None:
        """Record that everything up to ``cursor`` was handled."""
        if self.name:
            self._conn.execute(
                "INSERT INTO event_cursors (name, last_id, updated_at) VALUES (%s, %s, now()) "
                "ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id, updated_at = now()",
                (self.name, self.cursor),
            )

    def _fetch(self) -> tuple[list[Event], bool]:
        """Events after the cursor that no running transaction can precede any more, and whether
        committed ones wait behind an older, still running transaction (no NOTIFY may come for
        them). One statement: the horizon costs a look at every backend, so it is taken once."""
        with self._conn.cursor() as cur:
            cur.execute(
                _FETCH.format(cond=self._cond),
                [self.cursor, *self._params, FETCH_LIMIT, self.cursor, *self._params],
            )
            rows = cur.fetchall()
        waiting = bool(rows) and rows[-1][0] is None
        return [Event(*r[:5]) for r in (rows[:-1] if waiting else rows)], waiting

    def _drain(self) -> None:
        """Drop wake-ups already received: the fetch that follows sees what they announced."""
        for _ in self._conn.notifies(timeout=0):
            pass

    def _wait(self, timeout: float) -> None:
        """Block until a NOTIFY arrives or ``timeout`` passes."""
        for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            pass

    def events(self, follow: bool = True, timeout: float | None = None) -> Iterator[Event]:
        """Yield events in id order; with ``follow`` wait for new ones (until ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = PENDING_POLL_S
        while True:
            try:
                self._drain()
                batch, waiting = self._fetch()
                for event in batch:
                    yield event
                    self.cursor = event.id
                    self.commit()
                if batch:
                    backoff = PENDING_POLL_S
                if len(batch) == FETCH_LIMIT:
                    continue  # more may be there already
                if not follow:
                    return
                remaining = self.poll_seconds
                if waiting:  # look again soon
                    remaining, backoff = backoff, min(backoff * 2, PENDING_POLL_MAX_S)
                if deadline is not None:
                    remaining = min(remaining, deadline - time.monotonic())
                    if remaining <= 0:
                        return
                self._wait(remaining)
            except psycopg.OperationalError:
                # a followed stream outlives a database restart: resume from the cursor
                if not follow or not self._reconnect(deadline):
                    raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe(
    url: str,
    topics: Sequence[str] = (),
    since: int | None = None,
    name: str | None = None,
    follow: bool = True,
    timeout: float | None = None,
) -> Iterator[Event]:
    """Generator form of ``Subscription`` for simple consumers."""
    with Subscription(url, topics, since=since, name=name) as sub:
        yield from sub.events(follow=follow, timeout=timeout)
