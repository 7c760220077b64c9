"""A durable on-disk queue of row batches: append-only segments, fsync'd, replayed in order.

Each record is one line ``<crc32 hex> <json>``; a torn last line (crash mid-write) fails its
checksum and is skipped, since it was never acknowledged to the producer.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SEGMENT_BYTES = 16 * 1024 * 1024


@dataclass
class Record:
    created: float
    rows: list[list[Any]]


def _encode(rows: Sequence[Sequence[Any]]) -> bytes:
    body = json.dumps({"t": time.time(), "rows": rows}, default=str, separators=(",", ":"))
    data = body.encode()
    return b"%08x %s\n" % (zlib.crc32(data), data)


def _decode(line: bytes) -> Record | None:
    crc, _, data = line.rstrip(b"\n").partition(b" ")
    try:
        if int(crc, 16) != zlib.crc32(data):
            return None
        obj = json.loads(data)
    except ValueError:
        return None
    return Record(obj["t"], obj["rows"])


class Spool:
    """Segments ``000000000001.seg``, ``...2.seg`` in ``directory``; oldest replayed first."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._fh: Any = None
        self._current: Path | None = None

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.seg"))

    def append(self, rows: Sequence[Sequence[Any]]) -> None:
        """Write one batch durably (returns after fsync)."""
        data = _encode(rows)
        with self._lock:
            if self._fh is None or self._fh.tell() >= self.segment_bytes:
                self._rotate()
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def _rotate(self) -> None:
        if self._fh is not None:
            self._fh.close()
        existing = self.segments()
        number = int(existing[-1].stem) + 1 if existing else 1
        self._current = self.directory / f"{number:012d}.seg"
        self._fh = open(self._current, "ab")  # noqa: SIM115 - kept open across appends
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def seal(self) -> None:
        """Close the open segment so that the next append starts a new one."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
                self._current = None

    def oldest(self) -> Iterator[tuple[Path, list[Record]]]:
        """Sealed segments, oldest first, each with its intact records."""
        with self._lock:  # snapshot: later appends go to a newer segment, never these
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            paths = self.segments()
        for path in paths:
            records = []
            with open(path, "rb") as fh:
                for number, line in enumerate(fh, 1):
                    record = _decode(line)
                    if record is None:
                        log.warning("spool %s: skipping torn record at line %d", path, number)
                        continue
                    records.append(record)
            yield path, records

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def _sizes(self) -> list[int]:
        """Sizes of the segments; one removed meanwhile by a replay counts as empty."""
        sizes = []
        for path in self.segments():
            try:
                sizes.append(path.stat().st_size)
            except FileNotFoundError:
                continue
        return sizes

    def size_bytes(self) -> int:
        return sum(self._sizes())

    def oldest_age_seconds(self) -> float:
        for path in self.segments():
            try:
                with open(path, "rb") as fh:
                    for line in fh:
                        record = _decode(line)
                        if record is not None:
                            return max(0.0, time.time() - record.created)
            except FileNotFoundError:
                continue
        return 0.0

    def empty(self) -> bool:
        return not any(self._sizes())

    def close(self) -> None:
        self.seal()
