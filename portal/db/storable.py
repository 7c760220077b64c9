"""Make values storable in PostgreSQL: text without NUL or lone surrogates, JSON without NaN.

PostgreSQL ``text`` cannot hold NUL, UTF-8 cannot encode a lone surrogate (``"\\ud800"``, which
``json.loads`` happily returns), and ``jsonb`` refuses ``NaN``/``Infinity`` (which
``json.dumps`` writes by default), ``\\u0000`` and lone-surrogate escapes. One such value would
make the database refuse a whole batch, so producers (the log parser) and the write path (as a
last line of defence) pass values through here:

- NUL and lone surrogates become U+FFFD;
- a non-finite float inside JSON becomes the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``;
- ``truncate`` cuts text at a limit and says so: ``...[truncated 1234 chars]``.

Every function is deterministic (the log shipper's idempotency key needs the same row on a
re-read) and never raises.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

REPLACEMENT = "\ufffd"
_MARKER = re.compile(r"\.\.\.\[truncated \d+ chars\]\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
# JSON text that may hold something jsonb refuses: NaN/Infinity, \u0000, surrogate escapes
_JSON_SUSPECT = re.compile(r"NaN|Infinity|\\u0000|\\u[dD][89a-fA-F]")


def clean_text(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD (cheap when there are none)."""
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _SURROGATE.sub(REPLACEMENT, text)
    return text


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters plus a visible marker, when it is longer.

    Idempotent: text this already cut at ``limit`` is returned as it is.
    """
    if len(text) <= limit:
        return text
    marker = _MARKER.search(text, limit)
    if marker is not None and marker.start() == limit:
        return text
    return f"{text[:limit]}...[truncated {len(text) - limit} chars]"


def clean_value(value: Any) -> Any:
    """A JSON-able value with every string cleaned and non-finite floats spelled as strings."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    if value is None or isinstance(value, bool | int):
        return value
    return clean_text(str(value))


def json_text(value: Any) -> str:
    """``value`` as JSON text ``jsonb`` accepts."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(clean_value(value), allow_nan=False)
    return clean_json_text(text)


def clean_json_text(text: str) -> str:
    """JSON text made acceptable to ``jsonb``; text that is not JSON at all is left as is."""
    text = clean_text(text)
    if not _JSON_SUSPECT.search(text):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(clean_value(value), allow_nan=False)
