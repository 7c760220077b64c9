"""``portal collect logs``: tail log files into the log store, exactly once across crashes.

Each file is known by (device, inode, hash of its first line), so a rename (rotation) keeps
its identity and a truncation or a new file gets a new one. A batch is durable in the write
path's fsync'd spool *before* the read offsets are saved (atomically); a crash between the
two re-reads lines whose rows carry the same (source, seq=byte offset, time) key, which the
store ignores as duplicates. Lines without a timestamp get a time fixed by the saved state,
so a re-read assigns the same time. A file the state does not know is first looked up in the
store (``collectors.logsources``): if its rows are there (state dir lost, file restored on
another inode), shipping resumes after the last stored one, under its old key.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import queue
import re
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
import psycopg

from collectors import logsources
from collectors.logparse import (
    CONTINUATION,
    HEAD,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    line_kind,
    parse_line,
    strip_ansi,
)
from portal import settings
from portal.auth.roles import requires
from portal.db.engine import connect_raw
from portal.db.storable import clean_text, truncate
from portal.errors import PortalError, SettingsError
from portal.logs.store import log_writer
from portal.timeparse import parse_duration

if TYPE_CHECKING:
    from portal.logs.loki import LokiClient

log = logging.getLogger(__name__)

FIRST_LINE_MAX = 4096  # bytes hashed for identity; longer first lines are cut here
READ_BYTES = 4 * 1024 * 1024  # per file and cycle: keeps one cycle's memory bounded
IDLE_CHECKPOINT_S = 2.0  # refresh the clock for timestamp-less lines at least this often
ROTATED_GRACE_S = 5.0  # keep reading a rotated-away file this long after its last growth
STORE_RETRY_S = 5.0  # a store that did not answer a source lookup is asked again after this
PARTIAL_AFTER_S = 5.0  # a file quiet this long: its last record (or unfinished line) is shipped
MAX_RECORD_BYTES = MAX_MESSAGE_CHARS  # a longer multi-line record is cut into several rows
_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() strips: a line of only these is blank
#: A record's own keys that would read as the row's columns, and the labels they become.
RECORD_LABELS = {"host": "record_host", "component": "record_component"}


@dataclass(frozen=True)
class Source:
    """A glob to tail, the component its lines belong to (None: from the file name), and the
    regular expression a line that opens a record matches (None: ``logparse.line_kind``)."""

    pattern: str
    component: str | None = None
    start: re.Pattern[str] | None = None
    #: columns taken from each record's own fields (a central folder of many hosts' files)
    record: tuple[str, ...] = ()


def parse_sources(spec: str | Iterable[str], data_dir: Path, setting: str = "") -> list[Source]:
    """``GLOB[=component][;record=host,component][;start=REGEX]`` items (comma-separated string
    or list); empty: the stack's logs."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    sources = []
    for raw in (i.strip() for i in items):
        if not raw:
            continue
        head, has_start, regex = raw.partition(";start=")
        head, has_record, taken = head.partition(";record=")
        pattern, sep, component = head.partition("=")
        record = tuple(c.strip() for c in taken.split("+") if c.strip()) if has_record else ()
        if (
            not pattern
            or (sep and not component.strip())
            or ";" in component
            or (has_record and (not record or not set(record) <= set(RECORD_LABELS)))
        ):
            raise SettingsError(
                setting or "--source",
                f"{raw!r} is not GLOB[=component][;record=host+component][;start=REGEX]",
            )
        start = None
        if has_start:
            try:
                start = re.compile(regex)
            except re.error as exc:
                raise SettingsError(
                    setting or "--source", f"{raw!r}: start={regex!r} is not a regex ({exc})"
                ) from None
        sources.append(
            Source(os.path.expanduser(pattern.strip()), component.strip() or None, start, record)
        )
    if sources:
        return sources
    # the stack's own logs, and per-program folders (e.g. the simulator's log/demo/*.log)
    return [Source(str(data_dir / "log" / "*.log")), Source(str(data_dir / "log" / "*" / "*.log"))]


def component_from_name(path: str) -> str:
    """``l1-beam.log.1`` -> ``l1-beam``: the file name up to its ``.log`` suffix."""
    name = os.path.basename(path)
    return name.split(".log")[0] if ".log" in name else name.split(".")[0] or name


@dataclass
class FileState:
    """What is known about one file; persisted so a restart resumes exactly where it stopped."""

    key: str  # the rows' ``source``: host, device, inode, first-line hash, generation
    path: str
    dev: int
    ino: int
    fp: str
    component: str
    offset: int = 0  # where the next unshipped record starts
    gen: int = 0
    last_time: float | None = None  # newest timestamp parsed in this file
    grown_at: float = field(default_factory=time.time)


@dataclass
class NewFile:
    """A file a discovery pass met that the state does not know: open, identified, waiting for
    the store to say which source it is."""

    fh: IO[bytes]
    dev: int
    ino: int
    fp: str
    gen: int
    path: str
    component: str
    source: Source


class StateFile:
    """JSON state under ``<data_dir>/logship/``, replaced atomically (write, fsync, rename)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.json"
        directory.mkdir(parents=True, exist_ok=True)

    def load(self) -> tuple[float, dict[str, FileState]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return time.time(), {}
        files = {k: FileState(**v) for k, v in data.get("files", {}).items()}
        return float(data.get("clock", time.time())), files

    def save(self, clock: float, files: dict[str, FileState]) -> None:
        tmp = self.path.with_suffix(".tmp")
        body = json.dumps({"clock": clock, "files": {k: asdict(v) for k, v in files.items()}})
        with open(tmp, "w") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def first_line_hash(fh: IO[bytes]) -> str | None:
    """Hash of the first complete line; None while the file has none (not yet identifiable)."""
    fh.seek(0)
    head = fh.read(FIRST_LINE_MAX)
    end = head.find(b"\n")
    if end < 0:
        if len(head) < FIRST_LINE_MAX:
            return None
        end = len(head)
    return hashlib.sha1(head[:end]).hexdigest()[:16]


class Shipper:
    """Polls the sources, writes parsed lines through the durable log write path."""

    def __init__(
        self,
        cfg: settings.Settings,
        sources: list[Source],
        state_dir: Path | None = None,
        max_lines: int = 20000,
        partial_after: float = PARTIAL_AFTER_S,
    ) -> None:
        self.cfg = cfg
        self.partial_after = partial_after
        self.start_of: dict[str, re.Pattern[str] | None] = {}  # by file key: its source's
        self.record_of: dict[str, tuple[str, ...]] = {}  # by file key: columns from records
        self.host = truncate(cfg.host_name, MAX_NAME_CHARS)  # indexed column: kept short
        self.sources = sources
        self.max_lines = max_lines
        self.state = StateFile(state_dir or cfg.data_dir / "logship")
        #: no saved state: the spool may hold rows of files about to be looked up in the store
        self.fresh = not self.state.path.exists()
        self.clock, self.files = self.state.load()
        self._store: psycopg.Connection | None = None
        self._store_retry_at = 0.0
        self.handles: dict[str, IO[bytes]] = {}
        self.writer = log_writer(cfg, name="logship", durable=True)
        self.loki = LokiForwarder(cfg.loki_url) if cfg.loki_url else None
        self._saved_at = 0.0
        self._labels_cache: dict[str, str] = {}

    # -- discovery ------------------------------------------------------------------------
    def _key(self, dev: int, ino: int, fp: str, gen: int) -> str:
        return f"{self.host}:{dev}:{ino}:{fp}:{gen}"

    def discover(self) -> None:
        """Match the globs; start tracking new files, notice truncation and rewrites."""
        try:
            self._discover()
        finally:
            if self._store is not None:
                self._store.close()
                self._store = None

    def _discover(self) -> None:
        by_inode = {(f.dev, f.ino): f for f in self.files.values()}
        new: dict[tuple[int, int], NewFile] = {}  # files the state does not know, by inode
        for source in self.sources:
            for path in sorted(glob.glob(source.pattern)):
                try:
                    fh = open(path, "rb")  # noqa: SIM115 - kept open while tracked
                except OSError:
                    continue
                st = os.fstat(fh.fileno())
                fp = first_line_hash(fh)
                known = by_inode.get((st.st_dev, st.st_ino))
                if fp is None:  # no complete line yet: nothing to ship, no identity
                    fh.close()
                    continue
                if known and known.fp == fp and st.st_size >= known.offset:
                    known.path = path  # the same file (perhaps renamed into the glob)
                    self.start_of.setdefault(known.key, source.start)
                    self.record_of.setdefault(known.key, source.record)
                    self._adopt(known.key, fh)
                    continue
                met = new.get((st.st_dev, st.st_ino))
                if met is not None:  # met again in this pass (another glob, a link)
                    if met.fp == fp:
                        met.path = path
                    fh.close()  # a different first line by now: the next pass sees to it
                    continue
                gen = 0
                if known:  # same inode, shorter or different content: truncated/rewritten
                    gen = known.gen + 1
                    log.info("%s was truncated or rewritten; reading it from the start", path)
                    self._forget(known.key)
                comp = truncate(source.component or component_from_name(path), MAX_NAME_CHARS)
                new[(st.st_dev, st.st_ino)] = NewFile(
                    fh, st.st_dev, st.st_ino, fp, gen, path, comp, source
                )
        files = list(new.values())
        for file, found in zip(files, self._resolve(files), strict=True):
            if found is None:  # the store cannot say yet: the lines wait in the file
                file.fh.close()
                continue
            key, gen, offset, last = found
            entry = FileState(
                key, file.path, file.dev, file.ino, file.fp, file.component, offset, gen, last
            )
            self.files[key] = entry
            self.start_of[key] = file.source.start
            self.record_of[key] = file.source.record
            self._adopt(key, file.fh)

    def _resolve(self, files: list[NewFile]) -> list[tuple[str, int, int, float | None] | None]:
        """(key, generation, offset, newest time) of each file the state does not know.

        Resumed after its last stored record when the store has this file's rows; else a new
        key, registered before any row (one query and one insert for all the files). None:
        ask again later (the store is away, or the spool still holds rows a lookup must see).
        """
        if not files or time.monotonic() < self._store_retry_at:
            return [None] * len(files)
        if self.fresh and not self.writer.spool.empty():
            self._store_retry_at = time.monotonic() + 0.2  # the flusher is delivering them
            return [None] * len(files)
        self.fresh = False
        out: list[tuple[str, int, int, float | None] | None] = []
        try:
            if self._store is None:
                self._store = connect_raw(self.cfg.database_url)
            conn = self._store
            registered = logsources.registered(conn, self.host, (f.fp for f in files))
            busy = set(self.files)
            new: list[tuple[str, str, str]] = []
            for file in files:
                keys = registered.setdefault(file.fp, [])
                found = self._resume(conn, file, keys, busy)
                if found is None:
                    gen = file.gen
                    key = self._key(file.dev, file.ino, file.fp, gen)
                    while key in keys or key in busy:
                        gen += 1
                        key = self._key(file.dev, file.ino, file.fp, gen)
                    keys.append(key)
                    new.append((key, file.fp, clean_text(file.path)))
                    found = (key, gen, 0, None)
                busy.add(found[0])
                out.append(found)
            logsources.register(conn, self.host, new)
        except (PortalError, psycopg.Error) as exc:
            for file in files:
                log.warning("%s waits: the log store cannot say what it holds (%s)", file.path, exc)
            if self._store is not None:
                self._store.close()
                self._store = None
            self._store_retry_at = time.monotonic() + STORE_RETRY_S
            return [None] * len(files)
        return out

    def _resume(
        self, conn: psycopg.Connection, file: NewFile, keys: list[str], busy: set[str]
    ) -> tuple[str, int, int, float | None] | None:
        """The registered source ``file`` is, if the store holds its last record at the same
        offset with the same text: shipping goes on after it, under its key."""
        for key in keys:
            stored = None if key in busy else logsources.last_stored(conn, key)
            end = None if stored is None else self._end_of(file.fh, stored, file.source.start)
            if stored is not None and end is not None:
                log.info("%s: its rows up to byte %d are stored; resuming", file.path, end)
                return key, int(key.rpartition(":")[2] or 0), end, stored.time.timestamp()
        return None

    def _end_of(
        self, fh: IO[bytes], stored: logsources.Stored, start: re.Pattern[str] | None
    ) -> int | None:
        """Where the record ``stored`` ends in ``fh``, if the file holds it at its offset."""
        fh.seek(stored.seq)
        chunk = fh.read(READ_BYTES)
        records = _records(chunk, len(chunk), start)
        if not records or records[0][0] != 0:
            return None
        text = records[0][2]
        if clean_text(parse_line(text).message) != stored.message:
            return None
        return stored.seq + records[0][1]

    def _adopt(self, key: str, fh: IO[bytes]) -> None:
        old = self.handles.get(key)
        if old is None:
            self.handles[key] = fh
        elif old is not fh:
            fh.close()

    def _forget(self, key: str) -> None:
        self.files.pop(key, None)
        self.start_of.pop(key, None)
        fh = self.handles.pop(key, None)
        if fh is not None:
            fh.close()

    def reopen_rotated(self) -> None:
        """After a restart, find files renamed away while we were down, by inode and hash."""
        for entry in list(self.files.values()):
            if entry.key in self.handles:
                continue
            for candidate in _siblings(entry.path):
                try:
                    fh = open(candidate, "rb")  # noqa: SIM115 - kept open while tracked
                except OSError:
                    continue
                st = os.fstat(fh.fileno())
                if (st.st_dev, st.st_ino) == (entry.dev, entry.ino) and first_line_hash(
                    fh
                ) == entry.fp:
                    entry.path = candidate
                    self.handles[entry.key] = fh
                    break
                fh.close()

    # -- reading --------------------------------------------------------------------------
    def read_new(self) -> tuple[list[tuple[Any, ...]], dict[str, tuple[int, float | None]]]:
        """New complete records of every tracked file, as rows, plus each file's next offset.

        A record is a head line and its continuation lines. The last record read may not be
        finished (the writer may still add lines to it, or end its line): it is held, and the
        offset stops at its start, until a later record starts or the file has been quiet for
        ``partial_after`` seconds (by its mtime, so a restart decides the same).
        """
        rows: list[tuple[Any, ...]] = []
        progress: dict[str, tuple[int, float | None]] = {}
        now = time.time()
        for key, entry in self.files.items():
            fh = self.handles.get(key)
            if fh is None or len(rows) >= self.max_lines:
                continue
            fh.seek(entry.offset)
            chunk = fh.read(READ_BYTES)
            full = len(chunk) == READ_BYTES
            quiet = not full and now - os.fstat(fh.fileno()).st_mtime >= self.partial_after
            end = len(chunk) if quiet else chunk.rfind(b"\n") + 1
            if end == 0 and full:
                end = len(chunk)  # one giant line: ship it cut rather than stall forever
            if end == 0:
                continue
            # an unfinished last line still tells whether the record above it is finished
            scan = end if full else len(chunk)
            records = _records(chunk, scan, self.start_of.get(key))
            if records and not quiet and not (full and len(records) == 1):
                records.pop()  # perhaps unfinished: read again from its start next time
            offset, last = entry.offset, entry.last_time
            pos = shipped = 0
            taken = self.record_of.get(key, ())
            room = self.max_lines - len(rows)
            for start, stop, text in records[:room]:
                row, last = self._row(entry, offset + start, text, last, taken)
                rows.append(row)
                pos, shipped = stop, shipped + 1
            if quiet and shipped == len(records):
                pos = end  # trailing blank lines of a quiet file: nothing left to wait for
            if pos > 0:
                progress[key] = (offset + pos, last)
        return rows, progress

    def _row(
        self, entry: FileState, seq: int, text: str, last: float | None, taken: tuple[str, ...]
    ) -> tuple[tuple[Any, ...], float | None]:
        """One record's row, and the newest time of its file so far. ``taken``: the columns
        its source takes from the record's fields."""
        parsed = parse_line(text)
        when = parsed.time
        if when is not None:
            seen, floor = when.timestamp(), last or 0.0
            last = seen if seen > floor else floor
        else:  # continuation or timestamp-less line: deterministic, from the saved state
            when = datetime.fromtimestamp(max(last or 0.0, self.clock), UTC)
        # ISO text, not datetime: the spool's JSON and COPY both take it as is, cheaply (and
        # the line's own text when PostgreSQL reads it as the same instant)
        stamp = parsed.stamp or when.isoformat()
        labels = parsed.labels
        host, component = self.host, entry.component
        if taken:  # a source declared ;record=...: those fields are the row's columns
            for name in taken:  # popped from the parser's own dict, made for this row
                value = labels.pop(name, None)
                if value:
                    value = truncate(str(value), MAX_NAME_CHARS)
                    if name == "host":
                        host = value
                    elif name == "component":
                        component = value
        # otherwise the columns are the shipper's: a record's own host/component (Prometheus's
        # logfmt has component=...) is kept as a label beside them, never in their place
        if "host" in labels or "component" in labels:
            labels = {RECORD_LABELS.get(k, k): v for k, v in labels.items()}
        if labels:
            labels_json = json.dumps({**labels, "file": entry.path})
        else:  # the common case: one JSON text per file, built once
            labels_json = self._labels_cache.get(entry.path) or self._file_labels(entry)
        row = (
            stamp,
            host,
            component,
            parsed.level,
            parsed.message,
            labels_json,
            entry.key,
            seq,
        )
        return row, last

    def _file_labels(self, entry: FileState) -> str:
        text = self._labels_cache.get(entry.path)
        if text is None:
            text = self._labels_cache[entry.path] = json.dumps({"file": entry.path})
        return text

    # -- one cycle ------------------------------------------------------------------------
    def cycle(self) -> int:
        """Discover, read, write durably, then save offsets; returns the lines shipped."""
        self.discover()
        rows, progress = self.read_new()
        now = time.time()
        if rows:
            self.writer.write_many(rows)  # durable: on disk before we move the offsets
        for key, (offset, last) in progress.items():
            entry = self.files[key]
            if offset > entry.offset:
                entry.grown_at = now
            entry.offset, entry.last_time = offset, last
        self._drop_finished(now)
        if rows or progress or now - self._saved_at >= IDLE_CHECKPOINT_S:
            self.clock = now
            self.state.save(self.clock, self.files)
            self._saved_at = now
        if rows and self.loki is not None:
            self.loki.submit(rows)
        return len(rows)

    def _drop_finished(self, now: float) -> None:
        """Stop tracking rotated-away files once read to the end and quiet for a while."""
        current = {p for s in self.sources for p in glob.glob(s.pattern)}
        for key, entry in list(self.files.items()):
            fh = self.handles.get(key)
            if entry.path in current and fh is not None and _same_file(fh, entry.path):
                continue
            size = os.fstat(fh.fileno()).st_size if fh is not None else entry.offset
            if entry.offset >= size and now - entry.grown_at >= ROTATED_GRACE_S:
                self._forget(key)

    def run(self, poll: float, once: bool = False) -> None:
        """Ship until SIGTERM/SIGINT (or, with ``once``, until the files are read)."""
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.reopen_rotated()
        if self.fresh and not self.writer.spool.empty():
            self.writer.flush(timeout=30)  # the store must hold the spooled rows before lookups
        try:
            while not stop.is_set():
                shipped = self.cycle()
                if once and shipped == 0:
                    break
                if shipped < self.max_lines and not once:  # --once: no new data to wait for
                    stop.wait(poll)
        finally:
            self.close()

    def close(self) -> None:
        """Deliver the spooled backlog while it keeps shrinking; what is left stays spooled."""
        before = self.writer.spool.size_bytes()
        while not self.writer.flush(timeout=30):
            now = self.writer.spool.size_bytes()
            if now >= before:
                break  # the database is away: the spool keeps it for the next start
            before = now
        self.writer.close(timeout=5)
        if self.loki is not None:
            self.loki.close()
        for fh in self.handles.values():
            fh.close()
        self.handles.clear()


def _records(chunk: bytes, end: int, start: re.Pattern[str] | None) -> list[tuple[int, int, str]]:
    """``chunk[:end]`` cut into records: (start, end of its last line, text joined by ``\\n``).

    With ``start``, a line matching it opens a record and any other line continues the one
    above. Without, ``logparse.line_kind`` decides: an ``OTHER`` line continues a record whose
    first line is a ``HEAD``. Blank lines continue a record (trailing ones are dropped from its
    text) and are skipped outside one. A record stops growing at ``MAX_RECORD_BYTES``.
    """
    records: list[tuple[int, int, str]] = []
    lines: list[str] = []
    rec_start = rec_stop = keep = 0  # keep: the record's lines up to its last non-blank one
    rec_head = False  # the current record's first line looks like a record start
    data = chunk if end == len(chunk) else chunk[:end]
    # ASCII (the common case) is split as text at once: its offsets are the bytes'
    ascii_only = data.isascii()
    parts: list[str] | list[bytes] = (
        data.decode("ascii").split("\n") if ascii_only else data.split(b"\n")
    )
    if not parts[-1]:
        parts.pop()  # data ends with a newline (or is empty): no line after it
    pos = 0
    kind = HEAD
    for part in parts:
        stop = pos + len(part) + 1
        if stop > end:
            stop = end  # the last line, without its newline
        if isinstance(part, str):
            text = part.rstrip("\r")
            blank = not text.strip(_ASCII_SPACE)
        else:
            raw = part.rstrip(b"\r")
            text = raw.decode("utf-8", errors="replace")
            blank = not raw.strip()
        if blank:
            joins = True
        else:
            plain = strip_ansi(text) if "\x1b" in text else text
            if start is not None:
                kind = HEAD if start.match(plain) else CONTINUATION
            else:
                kind = line_kind(plain)
            joins = kind == CONTINUATION or (kind != HEAD and rec_head)
        if lines and (not joins or stop - rec_start > MAX_RECORD_BYTES):
            records.append(
                (rec_start, rec_stop, lines[0] if keep == 1 else "\n".join(lines[:keep]))
            )
            lines = []
        if lines:
            lines.append(text)
            if not blank:
                rec_stop, keep = stop, len(lines)
        elif not blank:
            lines, rec_start, rec_stop, keep = [text], pos, stop, 1
            rec_head = start is not None or kind == HEAD
        pos = stop
    if lines:
        records.append((rec_start, rec_stop, lines[0] if keep == 1 else "\n".join(lines[:keep])))
    return records


def _siblings(path: str) -> list[str]:
    directory = os.path.dirname(path) or "."
    try:
        return [e.path for e in os.scandir(directory) if e.is_file(follow_symlinks=False)]
    except OSError:
        return []


def _same_file(fh: IO[bytes], path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    own = os.fstat(fh.fileno())
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


class LokiForwarder:
    """Pushes shipped rows to Loki from a background thread; Loki is a copy, not the store."""

    def __init__(self, url: str, max_batches: int = 100) -> None:
        from portal.logs.loki import LokiClient  # with its HTTP client: only when Loki is set

        self.client: LokiClient = LokiClient(url)
        self.queue: queue.Queue[list[tuple[Any, ...]] | None] = queue.Queue(max_batches)
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="loki-push", daemon=True)
        self.thread.start()

    def submit(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            self.queue.put_nowait(rows)
        except queue.Full:
            self.dropped += len(rows)
            log.warning("Loki push queue full: %d lines not sent to Loki", self.dropped)

    def _run(self) -> None:
        from portal.logs.loki import Entry, to_ns

        while (rows := self.queue.get()) is not None:
            entries = [
                Entry(
                    {"host": r[1], "component": r[2], "level": r[3]},
                    to_ns(datetime.fromisoformat(r[0])),
                    r[4],
                )
                for r in rows
            ]
            try:
                self.client.push(entries)
            except PortalError as exc:
                self.dropped += len(entries)
                log.warning("%s; %d lines not sent to Loki", exc, len(entries))

    def close(self, timeout: float = 30.0) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=timeout)
        self.thread.join(timeout)
        self.client.close()


@requires("operator")
@click.command("logs")
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="GLOB[=COMPONENT][;record=host+component][;start=REGEX]",
    help="Files to tail (repeatable); default PORTAL_LOG_SOURCES, else the stack's logs "
    "(<data_dir>/log/*.log and <data_dir>/log/*/*.log). record=: take these columns from each "
    "record's own fields (files gathered from many hosts). start=REGEX: the lines that open a "
    "record; other lines continue it.",
)
@click.option("--poll", type=float, default=0.5, show_default=True, help="Seconds between scans.")
@click.option(
    "--once",
    is_flag=True,
    help="Ship what the files hold now, then exit.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where read offsets are kept (default <data_dir>/logship).",
)
@click.option(
    "--partial-after",
    default=None,
    metavar="DURATION",
    help="Ship a file's last record (or unfinished last line) once the file is this quiet "
    f"[default: {PARTIAL_AFTER_S:g}s; with --once: 0s, the run is the end].",
)
def command(
    sources: tuple[str, ...],
    poll: float,
    once: bool,
    state_dir: Path | None,
    partial_after: str | None,
) -> None:
    """Tail log files into the log store (and Loki when PORTAL_LOKI_URL is set)."""
    if partial_after is None:
        quiet = 0.0 if once else PARTIAL_AFTER_S
    else:
        quiet = parse_duration(partial_after, "--partial-after").total_seconds()
    cfg = settings.get()
    if sources:
        parsed = parse_sources(sources, cfg.data_dir)
    else:
        parsed = parse_sources(cfg.log_sources, cfg.data_dir, "PORTAL_LOG_SOURCES")
    shipper = Shipper(cfg, parsed, state_dir, partial_after=quiet)
    log.info("shipping %s", ", ".join(s.pattern for s in parsed))
    shipper.run(poll, once=once)
