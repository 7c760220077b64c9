"""Arbitrary bytes in a log file: every line stored exactly once, the shipper never fails.

Hypothesis writes files of random lines (invalid UTF-8, NUL, escapes, CR, long lines, no final
newline) and ships them with the real ``portal collect logs --once`` into the test database.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.db import engine as db_engine
from tests.conftest import run_portal, shared_tmpdir

PIECES = [
    b"\n",
    b"\r\n",
    b"\x00",
    b"\xff\xfe",
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\x1b[31m",
    b"\x1b]0;t\x07",
    b"\x1b",
    b"  ",
    b"\t",
    b"ERROR ",
    b"Traceback (most recent call last):",
    b"2026-12-01T14:05:03Z ",
    b"Dec  1 14:05:03 ",
    b"[01/Dec/2026:14:05:03 +0000]",
    b"1796133903 ",
    b'{"ts": 1e400, "msg": "\\ud800", "x": NaN}',
    b"level=warn msg=",
    b"\\u0000",
]
CONTENT = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=40)), max_size=60)


def line_starts(data: bytes) -> list[int]:
    """Offsets of the lines the shipper must store: not blank (ASCII whitespace only)."""
    out, pos = [], 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        stop = len(data) if nl < 0 else nl + 1
        if data[pos:stop].rstrip(b"\r\n").strip():
            out.append(pos)
        pos = stop
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pieces=CONTENT)
def test_arbitrary_bytes_every_line_once(database_url: str, pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    workdir = shared_tmpdir("obsportal-fuzz-")
    host = f"fuzz-{uuid.uuid4().hex[:8]}"
    try:
        log = workdir / "app.log"
        log.write_bytes(b"first line\n" + data)
        then = datetime.now(UTC).timestamp() - 3600  # the writer is gone: ship the last line too
        os.utime(log, (then, then))
        env = {
            "PORTAL_DATABASE_URL": database_url,
            "PORTAL_DATA_DIR": str(workdir / "var"),
            "PORTAL_HOST_NAME": host,
        }
        # every line opens a record: each line is one row, counted by its offset
        source = f"{log}=app;start="
        for _ in range(2):  # a second run finds nothing new
            done = run_portal("collect", "logs", "--once", "--source", source, env=env)
            assert done.returncode == 0, done.stderr[-3000:]
            assert "Traceback" not in done.stderr, done.stderr[-3000:]
        seqs = stored_seqs(database_url, host)
        assert seqs == [0] + [11 + s for s in line_starts(data)]
        # default record rules: lines join, but none is stored twice or lost past the offset
        default = f"fuzz-{uuid.uuid4().hex[:8]}"
        env["PORTAL_HOST_NAME"] = default
        env["PORTAL_DATA_DIR"] = str(workdir / "var2")
        done = run_portal("collect", "logs", "--once", "--source", f"{log}=app", env=env)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
        joined = stored_seqs(database_url, default)
        assert joined and set(joined) <= set(seqs) and len(joined) == len(set(joined))
        assert joined[0] == 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def stored_seqs(url: str, host: str) -> list[int]:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        got = conn.execute("SELECT seq FROM log_lines WHERE host = %s ORDER BY seq", (host,))
        return [int(r[0]) for r in got.fetchall()]


def test_fuzz_helper_counts_lines() -> None:
    assert line_starts(b"a\n\n  \r\nb\r\nc") == [0, 7, 10]
    assert line_starts(b"") == []
    assert Path(__file__).name == "test_logs_fuzz.py"
