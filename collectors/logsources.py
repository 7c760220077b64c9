"""What the log store already holds of a file: exactly once even when the shipper's state is lost.

Rows are keyed by (source, byte offset, time) under the unique index ``log_lines_key``. The
shipper's state dir says which source a file is and how far it was read; when that is gone (or
the file comes back on another inode, restored from a backup), time stamps the shipper gave
timestamp-less lines and the inode in the key would differ, so the same lines would be stored
again. Instead, every source is registered in ``log_sources`` by host and first-line
fingerprint, and a file the state does not know is matched to the registered source whose last
stored record it holds at the same offset with the same text; shipping resumes after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True)
class Stored:
    """The last row stored of one source: where its record starts, its time and its text."""

    key: str
    seq: int
    time: datetime
    message: str


def registered(
    conn: psycopg.Connection, host: str, fingerprints: Iterable[str]
) -> dict[str, list[str]]:
    """Every source key this host registered for files with these first-line fingerprints, by
    fingerprint (in key order); one query for all the files a discovery pass met."""
    cur = conn.execute(
        "SELECT fingerprint, key FROM log_sources WHERE host = %s AND fingerprint = ANY(%s) "
        "ORDER BY key",
        (host, sorted(set(fingerprints))),
    )
    keys: dict[str, list[str]] = {}
    for fingerprint, key in cur.fetchall():
        keys.setdefault(str(fingerprint), []).append(str(key))
    return keys


def last_stored(conn: psycopg.Connection, key: str) -> Stored | None:
    """The stored row of ``key`` with the highest offset (one backward scan of the unique
    index per partition); None when retention dropped them all, or none was stored yet."""
    row = conn.execute(
        "SELECT seq, time, message FROM log_lines WHERE source = %s AND seq IS NOT NULL "
        "ORDER BY seq DESC LIMIT 1",
        (key,),
    ).fetchone()
    return None if row is None else Stored(key, int(row[0]), row[1], str(row[2]))


def register(conn: psycopg.Connection, host: str, sources: Sequence[tuple[str, str, str]]) -> None:
    """Record new sources ``(key, fingerprint, path)`` before any of their rows is written, in
    one statement (a key registered already is left as it is)."""
    if not sources:
        return
    keys, fingerprints, paths = (list(column) for column in zip(*sources, strict=True))
    conn.execute(
        "INSERT INTO log_sources (key, host, fingerprint, path) "
        "SELECT k, %s, f, p FROM unnest(%s::text[], %s::text[], %s::text[]) AS s (k, f, p) "
        "ON CONFLICT (key) DO NOTHING",
        (host, keys, fingerprints, paths),
    )
