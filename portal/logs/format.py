"""The output formats of ``portal logs`` and ``/api/logs``: one record per line, always.

Text is ``<ISO-8601 UTC time> <host> <component> <LEVEL> <message>`` with newlines in the
message escaped (``\\n``, ``\\r``, ``\\\\``), so ``grep``, ``awk`` and ``sort`` see one line
per record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

FORMATS = ("text", "jsonl")


class Record(NamedTuple):
    """A stored log line as queries return it; ``ts`` is already fixed-width ISO-8601 UTC."""

    ts: str
    host: str
    component: str
    level: str
    message: str
    labels: str  # JSON object text, straight from the database
    source: str | None
    seq: int | None


def escape(message: str) -> str:
    """Keep a record on one line, reversibly."""
    if "\\" in message or "\n" in message or "\r" in message:
        return message.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return message


def text_line(rec: Record) -> str:
    return f"{rec.ts} {rec.host} {rec.component or '-'} {rec.level} {escape(rec.message)}\n"


def json_line(rec: Record) -> str:
    head = json.dumps(
        {
            "time": rec.ts,
            "host": rec.host,
            "component": rec.component,
            "level": rec.level,
            "message": rec.message,
        }
    )
    return f'{head[:-1]}, "labels": {rec.labels or "{}"}}}\n'


def formatter(fmt: str) -> Callable[[Record], str]:
    """The line function for ``fmt`` (``text`` or ``jsonl``)."""
    return json_line if fmt == "jsonl" else text_line
