"""One hostile log line cannot stall or drop other lines: `portal collect logs --once` end to end.

A lone-surrogate escape (``\\ud800``) once made the database write raise ``UnicodeEncodeError``,
so the spooled batch was retried forever and every later line of the host waited behind it;
a ``NaN`` in a JSON line's labels once made PostgreSQL refuse a whole batch of 10,001 rows.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from collectors.logparse import (
    MAX_JSON_DEPTH,
    MAX_LABEL_KEY_CHARS,
    MAX_LABEL_VALUE_CHARS,
    MAX_MESSAGE_CHARS,
    parse_line,
)
from portal.db import engine as db_engine
from tests.conftest import run_portal, shared_tmpdir


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = shared_tmpdir("obsportal-hostile-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ship_once(workdir: Path, database_url: str, host: str, pattern: str) -> None:
    """One ``portal collect logs --once`` run: ship what the files hold, deliver, exit."""
    env = {
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_DATA_DIR": str(workdir / "var"),
        "PORTAL_HOST_NAME": host,
    }
    run_portal("collect", "logs", "--once", "--source", f"{pattern}=app", env=env, check=True)


def stored(url: str, host: str) -> list[tuple[str, dict[str, object]]]:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        return conn.execute(
            "SELECT message, labels FROM log_lines WHERE host = %s ORDER BY time, seq", (host,)
        ).fetchall()


def spool_left(workdir: Path) -> tuple[int, list[Path]]:
    """(bytes still spooled, rejected files) of the shipper's write path."""
    spool = workdir / "var" / "spool" / "logship"
    waiting = sum(p.stat().st_size for p in spool.glob("*.seg"))
    return waiting, sorted(spool.glob("rejected-*.jsonl"))


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def test_lone_surrogate_line_is_stored_sanitised_and_later_files_flow(
    database_url: str, workdir: Path
) -> None:
    host = f"surr-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    hostile = [
        f"{iso(now)} INFO before",
        json.dumps({"time": iso(now), "msg": "x \ud800 y", "beam": "\udc00"}),  # \ud800 escapes
        f'ts={iso(now)} level=warn msg="x \\ud800 y" nul="a\\u0000b"',
        f"{iso(now)} INFO after",
    ]
    assert "\\ud800" in hostile[1]  # the file holds the escape, as a JSON-lines logger writes it
    (workdir / "hostile.log").write_text("".join(line + "\n" for line in hostile))
    ship_once(workdir, database_url, host, str(workdir / "*.log"))

    clean = [f"{iso(now + timedelta(seconds=1, microseconds=i))} INFO clean-{i}" for i in range(50)]
    (workdir / "clean.log").write_text("".join(line + "\n" for line in clean))
    ship_once(workdir, database_url, host, str(workdir / "*.log"))

    rows = stored(database_url, host)
    messages = [m for m, _ in rows]
    assert messages[4:] == [f"clean-{i}" for i in range(50)]  # all 50, after the hostile file
    assert sorted(messages[:4]) == sorted(["before", "x \ufffd y", "x \ufffd y", "after"])
    labels = [lab for _, lab in rows[:4]]
    assert any(lab.get("beam") == "\ufffd" for lab in labels)
    assert any(lab.get("nul") == "a\ufffdb" for lab in labels)
    waiting, rejected = spool_left(workdir)
    assert waiting == 0 and rejected == [], "a batch was left spooled or set aside"


def test_nan_in_labels_does_not_sink_ten_thousand_good_lines(
    database_url: str, workdir: Path
) -> None:
    host = f"nan-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    nan_line = json.dumps({"time": iso(now), "msg": "ratio", "ratio": float("nan"), "n": 1})
    assert "NaN" in nan_line  # what Python's json.dumps writes by default
    long_host = json.dumps({"time": iso(now), "msg": "long host", "host": host + "h" * 5000})
    (workdir / "a-nan.log").write_text(nan_line + "\n" + long_host + "\n")
    good = [f"{iso(now + timedelta(microseconds=i))} INFO good-{i}" for i in range(10_000)]
    (workdir / "b-good.log").write_text("".join(line + "\n" for line in good))
    ship_once(workdir, database_url, host, str(workdir / "*.log"))

    rows = stored(database_url, host)
    messages = {m for m, _ in rows}
    assert len(rows) == 10_002  # a record's own host is a label: the row keeps the shipper's
    assert {f"good-{i}" for i in range(10_000)} <= messages
    (labels,) = [lab for m, lab in rows if m == "ratio"]
    assert (labels["ratio"], labels["n"]) == ("NaN", 1)
    (cut,) = [lab["record_host"] for m, lab in rows if m == "long host"]
    assert cut == (host + "h" * 5000)[:MAX_LABEL_VALUE_CHARS] + (
        f"...[truncated {len(host) + 5000 - MAX_LABEL_VALUE_CHARS} chars]"
    )
    waiting, rejected = spool_left(workdir)
    assert waiting == 0 and rejected == [], "a batch was left spooled or set aside"


def test_oversize_fields_are_cut_with_a_marker() -> None:
    big = "m" * (MAX_MESSAGE_CHARS + 10)
    parsed = parse_line(json.dumps({"msg": big, "blob": "b" * (MAX_LABEL_VALUE_CHARS + 5)}))
    assert parsed.message == "m" * MAX_MESSAGE_CHARS + "...[truncated 10 chars]"
    assert parsed.labels["blob"] == "b" * MAX_LABEL_VALUE_CHARS + "...[truncated 5 chars]"
    many = {f"k{i}": "v" * 1000 for i in range(40)}  # ~40 kB of labels
    labels = parse_line(json.dumps({"msg": "m", **many})).labels
    assert len(json.dumps(labels)) <= 16384 + 100
    assert labels["_truncated"].endswith("more labels dropped")
    assert parse_line(json.dumps({"msg": "m", "x": float("inf")})).labels == {"x": "Infinity"}
    (key,) = parse_line(json.dumps({"msg": "m", "k" * 300: 1})).labels
    assert key == "k" * MAX_LABEL_KEY_CHARS + "...[truncated 44 chars]"


def test_deep_json_and_non_finite_levels_are_read_not_raised() -> None:
    """JSON nested deeper than the decoder's stack once raised RecursionError, and a level of
    ``NaN``/``Infinity`` raised in ``int()``: either line stopped the shipper at every start."""
    deep = '{"msg": "m", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    parsed = parse_line(deep)
    assert parsed.message == deep and parsed.labels == {}  # read as text, whole
    shallow = '{"msg": "m", "x": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}"
    assert parse_line(shallow).message == "m"
    levels = [parse_line(f'{{"msg": "m", "level": {v}}}').level for v in ("NaN", "Infinity")]
    assert levels == ["DEBUG", "CRITICAL"]
    assert parse_line('{"msg": "m", "level": -Infinity}').level == "DEBUG"
