"""The one write path for high-rate rows (metrics, logs, pointings): batched COPY, spool on outage.

Rows wait in a bounded in-memory buffer; a background thread COPYs them in batches. When the
database is unreachable, batches go to an fsync'd on-disk spool, replayed in order when it
returns. Replays go through a staging table with ``ON CONFLICT DO NOTHING`` on each table's
idempotency key, so a batch delivered twice (crash after commit, retry) is stored once.
With ``durable=True`` every batch is spooled before ``write_many`` returns, so even ``kill -9``
of the producer loses nothing it was told was written. The writer keeps what it spooled itself
in memory too (bounded), so the flusher sends it without reading the segment back.

Rows are made storable before they are sent (``portal.db.storable``: no NUL or lone
surrogates in text, no NaN in JSON). When the database still refuses a batch because of its
data (SQLSTATE classes 22, 23, 54, or a value the client cannot encode), the batch is split in
halves until only the refused rows remain; those are set aside one by one in
``<spool>/rejected-*.jsonl`` with the error and counted in
``portal_write_rejected_rows_total``, and every other row is stored. Any other failure means
the database is away or cannot take rows now: the batch stays spooled and is retried.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import operator
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge

from portal.db.engine import connect_raw
from portal.db.spool import Spool
from portal.db.storable import clean_json_text, clean_text, json_text
from portal.db.tables import ENFORCED_KEYS, IDEMPOTENCY_KEYS, metadata
from portal.errors import DatabaseUnavailable, PortalError
from portal.settings import Settings

log = logging.getLogger(__name__)

ROWS = Counter("portal_write_rows", "Rows handled by the write path", ["writer", "outcome"])
SPOOL_BYTES = Gauge("portal_spool_bytes", "Bytes waiting in the on-disk spool", ["writer"])
SPOOL_AGE = Gauge("portal_spool_oldest_age_seconds", "Age of the oldest spooled batch", ["writer"])
QUEUE_ROWS = Gauge("portal_write_queue_rows", "Rows waiting in memory", ["writer"])
LAST_OK = Gauge(
    "portal_write_last_success_timestamp_seconds",
    "When a batch last reached the database",
    ["writer"],
)
REJECTED = Counter(
    "portal_write_rejected_rows",
    "Rows the database refused (bad data), set aside in the spool's rejected-*.jsonl",
    ["table", "writer"],
)

CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable)
#: SQLSTATE classes that blame the data: data exception, integrity constraint, program limit
#: (e.g. an index row too large)
ROW_ERROR_CLASSES = ("22", "23", "54")
#: value types a spool record gives back as they went in (JSON round trip): rows made only of
#: these may be sent from memory instead of from the segment they were spooled to
_PLAIN = frozenset({str, int, float, bool, type(None)})


def is_row_error(exc: BaseException) -> bool:
    """True when ``exc`` says a row is bad, not that the database is away or misconfigured."""
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate is None:  # raised by the client while encoding a value (NUL, adapt)
            return isinstance(exc, psycopg.DataError | psycopg.ProgrammingError)
        return exc.sqlstate[:2] in ROW_ERROR_CLASSES
    return isinstance(exc, ValueError | TypeError | OverflowError)  # UnicodeError is a ValueError


def rejected_files(spool_root: Path) -> list[Path]:
    """Every writer's set-aside rows under the spool root, oldest file first per writer."""
    return sorted(Path(spool_root).glob("*/rejected-*.jsonl"))


def rejected_records(spool_root: Path) -> Iterator[dict[str, Any]]:
    """Set-aside records: ``time``, ``writer``, ``table``, ``error``, ``columns``, ``rows``.

    Files written before rows were set aside one by one lack ``table``/``columns``/``time``;
    they are returned with the writer's folder name and ``None`` for what is unknown.
    """
    for path in rejected_files(spool_root):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(obj, dict):
                    continue
                obj.setdefault("writer", path.parent.name)
                obj.setdefault("table", None)
                obj.setdefault("columns", None)
                obj.setdefault("time", None)
                obj["file"] = str(path)
                yield obj


def copy_rows(
    conn: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    dedupe: bool = False,
) -> None:
    """COPY ``rows`` into ``table`` inside the connection's current transaction."""
    cols = ", ".join(columns)
    with conn.cursor() as cur:
        target = table
        if dedupe:
            target = f"_stage_{table}"
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {target} "
                f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
        with cur.copy(f"COPY {target} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        if dedupe:
            cur.execute(_dedupe_insert(table, cols, target))


def _dedupe_insert(table: str, cols: str, stage: str) -> str:
    """Move staged rows into ``table``, skipping any whose idempotency key is already there."""
    if table in ENFORCED_KEYS or table not in IDEMPOTENCY_KEYS:
        return f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING"
    key = IDEMPOTENCY_KEYS[table]
    match = " AND ".join(f"t.{k} = s.{k}" for k in key)
    return (
        f"INSERT INTO {table} ({cols}) SELECT DISTINCT ON ({', '.join(key)}) {cols} "
        f"FROM {stage} s WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {match})"
    )


class WritePath:
    """Buffered, spooled COPY writer for one table; thread-safe, one flusher thread."""

    @classmethod
    def from_settings(
        cls,
        cfg: Settings,
        table: str,
        columns: Sequence[str] | None = None,
        *,
        name: str | None = None,
        durable: bool = False,
    ) -> WritePath:
        """The write path with the ``PORTAL_WRITE_*`` settings and the data dir's spool."""
        return cls(
            cfg.database_url,
            table,
            columns,
            spool_dir=cfg.spool_dir,
            name=name,
            batch_rows=cfg.write_batch_rows,
            flush_seconds=cfg.write_flush_seconds,
            queue_rows=cfg.write_queue_rows,
            durable=durable,
        )

    def __init__(
        self,
        url: str,
        table: str,
        columns: Sequence[str] | None = None,
        *,
        spool_dir: Path,
        name: str | None = None,
        batch_rows: int = 5000,
        flush_seconds: float = 1.0,
        queue_rows: int = 200_000,
        durable: bool = False,
    ) -> None:
        if table not in metadata.tables:
            raise PortalError(f"write path: unknown table {table!r}")
        tcols = metadata.tables[table].columns
        self.columns = list(columns or [c.name for c in tcols])
        unknown = [c for c in self.columns if c not in tcols]
        if unknown:
            raise PortalError(f"write path: table {table} has no column(s) {', '.join(unknown)}")
        self._json_idx = [
            i for i, c in enumerate(self.columns) if tcols[c].type.__class__.__name__ == "JSONB"
        ]
        self.url, self.table, self.durable = url, table, durable
        self.name = name or table
        self.batch_rows, self.flush_seconds, self.queue_rows = batch_rows, flush_seconds, queue_rows
        self.spool = Spool(Path(spool_dir) / self.name)
        #: batches this writer spooled, by segment, with the segment's size after the last one
        self._memo: dict[Path, tuple[list[Sequence[Sequence[Any]]], int]] = {}
        self._memo_rows = 0
        self._memo_lock = threading.Lock()  # an append and its memo entry go together
        self._buffer: list[Sequence[Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._stop = False
        self._conn: psycopg.Connection | None = None
        self._retry_at = 0.0
        self._backoff = 0.5
        self._age_at = 0.0  # when the spool's age gauge may be read again
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"write-{self.name}", daemon=True)
        self._thread.start()

    # -- producer side -------------------------------------------------------------------
    def write(self, row: Sequence[Any]) -> None:
        self.write_many((row,))

    def write_many(self, rows: Iterable[Sequence[Any]]) -> None:
        """Queue rows; in durable mode they are on disk when this returns."""
        batch = list(rows)
        if not batch:
            return
        if self.durable:
            self._spool(batch)
            ROWS.labels(self.name, "spooled").inc(len(batch))
            self._idle.clear()
            self._wake.set()
            return
        overflow: list[Sequence[Any]] = []
        with self._lock:
            self._buffer.extend(batch)
            self._idle.clear()
            if len(self._buffer) > self.queue_rows:
                overflow, self._buffer = self._buffer, []
            elif len(self._buffer) >= self.batch_rows:
                self._wake.set()
        if overflow:  # memory bound reached: keep rows on disk rather than block or drop
            self._spool(overflow)
            ROWS.labels(self.name, "spooled").inc(len(overflow))
            self._wake.set()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued row is in the database; False if still pending at timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._retry_at = 0.0
            self._wake.set()
            if self._idle.wait(0.05) and self.pending_rows() == 0 and self.spool.empty():
                return True
        return False

    def pending_rows(self) -> int:
        with self._lock:
            return len(self._buffer)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed; anything left in memory goes to the spool."""
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            rest, self._buffer = self._buffer, []
        if rest:
            self._spool(rest)
        self.spool.close()
        if self._conn is not None:
            self._conn.close()

    # -- flusher side ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # never let the flusher die: log and keep the rows spooled
                log.exception("write path %s: unexpected error", self.name)
            self._report()

    def _drain(self) -> None:
        if not self.spool.empty() and (time.monotonic() < self._retry_at or not self._replay()):
            self._spool_buffer()  # keep order: nothing new goes ahead of the spool
            return
        while True:
            with self._lock:
                batch = self._buffer[: self.batch_rows]
                del self._buffer[: len(batch)]
            if not batch:
                if self.spool.empty():  # else batches spooled meanwhile: not idle (flush waits)
                    self._idle.set()
                else:
                    self._wake.set()  # replay them next
                return
            if not self._deliver(self._storable(self._prepare(batch)), dedupe=False):
                self._spool(batch)
                ROWS.labels(self.name, "spooled").inc(len(batch))
                self._spool_buffer()
                return

    def _spool_buffer(self) -> None:
        """While the database is away, move memory to disk so a crash cannot lose it."""
        with self._lock:
            rest, self._buffer = self._buffer, []
        if rest:
            self._spool(rest)
            ROWS.labels(self.name, "spooled").inc(len(rest))

    def _spool(self, rows: Sequence[Sequence[Any]]) -> None:
        """Append ``rows`` to the spool (fsync'd); keep them in memory too while within bounds,
        so that the flusher need not read them back."""
        batch = self._jsonable(rows)
        plain = set(map(type, itertools.chain.from_iterable(batch))) <= _PLAIN
        with self._memo_lock:  # no segment is removed meanwhile (see _replay)
            before = self._newest()
            self.spool.append(batch)
            after = self._newest()
            if after is None:  # cannot happen: the append made or grew one
                return
            path, size = after
            known = self._memo.pop(path, None)
            if known is not None:
                self._memo_rows -= sum(len(b) for b in known[0])
            if before is not None and before[0] == path:  # appended to the open segment
                batches = known[0] if known is not None and known[1] == before[1] else None
            else:  # a new segment: it holds this batch only
                batches = []
            kept = len(batch) + (sum(len(b) for b in batches) if batches else 0)
            if batches is None or not plain or self._memo_rows + kept > self.queue_rows:
                self.spool.seal()  # read back from disk; the next append starts a new segment
                return
            batches.append(batch)
            self._memo[path] = (batches, size)
            self._memo_rows += kept

    def _newest(self) -> tuple[Path, int] | None:
        """The newest segment (the open one, if any: see ``Spool._rotate``) and its size."""
        segments = self.spool.segments()
        if not segments:
            return None
        try:
            return segments[-1], segments[-1].stat().st_size
        except FileNotFoundError:
            return None

    def _spooled(self) -> Iterator[tuple[Path, list[Sequence[Sequence[Any]]]]]:
        """The spooled segments, oldest first, with their batches: from memory when this writer
        spooled all of them and nothing else was appended, else read from disk."""
        with self._memo_lock:
            self.spool.seal()  # later appends go to a newer segment, never these
            paths = self.spool.segments()
            kept: dict[Path, list[Sequence[Sequence[Any]]]] = {}
            for path in paths:
                known = self._memo.get(path)
                try:
                    same = known is not None and known[1] == path.stat().st_size
                except FileNotFoundError:
                    same = False
                if not same or known is None:
                    break
                kept[path] = known[0]
        if len(kept) == len(paths):
            yield from kept.items()
            return
        taken = set(paths)
        for path, records in self.spool.oldest():
            if path not in taken:
                return  # newer than this pass: the next one delivers it
            yield path, [r.rows for r in records]

    def _replay(self) -> bool:
        """Deliver spooled segments oldest first; True when the spool is empty."""
        # With a unique index, a plain COPY is safe (a duplicate raises and falls back to the
        # deduplicating path) and about twice as cheap as staging every batch.
        direct = self.table in ENFORCED_KEYS
        for path, batches in self._spooled():
            for rows in batches:
                if not self._deliver(self._storable(rows), dedupe=not direct):
                    return False
            with self._memo_lock:
                self.spool.remove(path)
                known = self._memo.pop(path, None)
                if known is not None:
                    self._memo_rows -= sum(len(b) for b in known[0])
        return True

    def _deliver(self, rows: Sequence[Sequence[Any]], dedupe: bool) -> bool:
        """Store ``rows``; False (keep them spooled) only when the database is away.

        Rows the database refuses are found by bisection and set aside one by one.
        """
        try:
            conn = self._connection()
            with conn.transaction():
                copy_rows(conn, self.table, self.columns, rows, dedupe=dedupe)
        except psycopg.errors.UniqueViolation as exc:
            if not dedupe:
                return self._deliver(rows, dedupe=True)
            refused: BaseException = exc
        except Exception as exc:
            if not is_row_error(exc) or (self._conn is not None and self._conn.closed):
                if not isinstance(exc, CONNECTION_ERRORS):
                    log.error("write path %s: the database refused a batch: %s", self.name, exc)
                self._lost_connection(exc)  # away or not ready for any row: retry later
                return False
            refused = exc
        else:
            ROWS.labels(self.name, "written").inc(len(rows))
            LAST_OK.labels(self.name).set_to_current_time()
            self._backoff = 0.5
            self.last_error = None
            return True
        if len(rows) == 1:
            return self._reject(rows, f"{type(refused).__name__}: {refused}")
        half = len(rows) // 2
        return self._deliver(rows[:half], dedupe) and self._deliver(rows[half:], dedupe)

    def _reject(self, rows: Sequence[Sequence[Any]], error: str) -> bool:
        """A row the database refuses (bad data) is set aside, never retried forever or lost."""
        path = self.spool.directory / f"rejected-{int(time.time())}.jsonl"
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "writer": self.name,
            "table": self.table,
            "error": error,
            "columns": self.columns,
            "rows": self._jsonable(rows),
        }
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
        log.error(
            "write path %s: %d row(s) refused by the database (%s); set aside in %s",
            self.name,
            len(rows),
            error.splitlines()[0],
            path,
        )
        ROWS.labels(self.name, "rejected").inc(len(rows))
        REJECTED.labels(self.table, self.name).inc(len(rows))
        return True

    def _lost_connection(self, exc: BaseException) -> None:
        self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, 10.0)
        log.warning(
            "write path %s: database unavailable (%s); spooling", self.name, self.last_error
        )

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect_raw(self.url, autocommit=True)
        return self._conn

    def _prepare(self, rows: list[Sequence[Any]]) -> list[Sequence[Any]]:
        """JSON columns as JSON text ``jsonb`` accepts (dicts and lists are serialised here)."""
        idx = self._json_idx
        if not idx or all(set(map(type, map(operator.itemgetter(i), rows))) <= {str} for i in idx):
            return rows  # already text, as the log shipper sends them
        out: list[Sequence[Any]] = []
        for row in rows:
            row = list(row)
            for i in idx:
                if not isinstance(row[i], str):
                    row[i] = json_text(row[i])
            out.append(row)
        return out

    def _storable(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """The last line of defence: no NUL or lone surrogate in text, no NaN in JSON text."""
        if self._clean(rows):
            return rows
        json_idx = set(self._json_idx)
        out: list[Sequence[Any]] | None = None
        for n, row in enumerate(rows):
            fixed: list[Any] | None = None
            for i, value in enumerate(row):
                if type(value) is not str:
                    continue
                if i in json_idx:
                    clean = clean_json_text(value)
                elif value.isascii() and "\x00" not in value:
                    continue
                else:
                    clean = clean_text(value)
                if clean is not value:
                    if fixed is None:
                        fixed = list(row)
                    fixed[i] = clean
            if fixed is not None:
                if out is None:
                    out = list(rows)
                out[n] = fixed
        return rows if out is None else out

    def _clean(self, rows: Sequence[Sequence[Any]]) -> bool:
        """True when ``_storable`` would change nothing: one test over all the batch's text at
        once (no NUL, nothing UTF-8 cannot encode, no text JSON cleaning looks at)."""
        text = "".join([v for row in rows for v in row if type(v) is str])
        if "\x00" in text:
            return False
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return False
        for i in self._json_idx:
            body = "".join([v for v in map(operator.itemgetter(i), rows) if type(v) is str])
            if "NaN" in body or "Infinity" in body or "\\u" in body:
                return False  # perhaps something clean_json_text changes: look row by row
        return True

    def _jsonable(self, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """Rows as spooled: JSON columns as text; tuples (a caller may reuse its lists)."""
        return [r if type(r) is tuple else tuple(r) for r in self._prepare(list(rows))]

    def _report(self) -> None:
        size = self.spool.size_bytes()
        SPOOL_BYTES.labels(self.name).set(size)
        now = time.monotonic()
        if not size:
            SPOOL_AGE.labels(self.name).set(0.0)
        elif now >= self._age_at:  # reads the oldest record back (a whole batch): once a second
            SPOOL_AGE.labels(self.name).set(self.spool.oldest_age_seconds())
            self._age_at = now + 1.0
        QUEUE_ROWS.labels(self.name).set(self.pending_rows())
