"""The one parser for times users type: CLI options, URL parameters and API arguments.

Grammar: a duration ago (``30s``, ``15m``, ``2h``, ``3d``, ``1w``), ``now``, ``now-6h``
(Grafana style), or an ISO-8601 time (UTC when it has no zone).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from portal.errors import PortalError

UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)")
_NOW_MINUS = re.compile(r"now\s*-\s*(.+)")
_PLUS_LOST = re.compile(
    r"([T ][\d:.]+) (\d\d:?\d\d)$"
)  # "+01:00" sent unencoded arrives as " 01:00"
HINT = "neither a duration (30m, 2h, 3d, 1w, now-6h) nor an ISO time (2026-12-01T06:00:00Z)"


def _shown(what: str, raw: str) -> str:
    return f"{what} {raw!r}" if what else repr(raw)


def parse_duration(raw: str, what: str = "duration") -> timedelta:
    """``2h`` -> 2 hours; a ``PortalError`` naming ``what`` for anything else or too large."""
    match = _DURATION.fullmatch(raw.strip().lower())
    if not match:
        raise PortalError(f"{_shown(what, raw)} is not a duration (30s, 15m, 2h, 3d, 1w)")
    try:
        return timedelta(seconds=float(match[1]) * UNITS[match[2]])
    except OverflowError:
        raise PortalError(f"{_shown(what, raw)} is too long a duration") from None


def is_relative(raw: str) -> bool:
    """True for values that move with the clock (``2h``, ``now``, ``now-6h``)."""
    text = raw.strip().lower()
    return text == "now" or bool(_DURATION.fullmatch(text) or _NOW_MINUS.fullmatch(text))


def parse_time(raw: str, what: str = "time", now: datetime | None = None) -> datetime:
    """An aware UTC datetime for ``raw``; errors are one line naming the parameter ``what``."""
    now = now or datetime.now(UTC)
    text = raw.strip()
    lower = text.lower()
    if lower == "now":
        return now
    ago = _NOW_MINUS.fullmatch(lower)
    span = ago[1] if ago else lower
    if _DURATION.fullmatch(span):
        try:
            return now - parse_duration(span, what)
        except OverflowError:
            raise PortalError(f"{_shown(what, raw)} reaches back before the year 1") from None
    try:
        when = None if ago else datetime.fromisoformat(_PLUS_LOST.sub(r"\1+\2", text))
    except ValueError:
        when = None
    if when is None:
        raise PortalError(f"{_shown(what, raw)} is {HINT}")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


#: The one text form of a time the portal prints (logs, audit): UTC, microseconds, ``Z``.
STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def stamp(when: datetime) -> str:
    """``when`` as ``STAMP`` (converted to UTC)."""
    return when.astimezone(UTC).strftime(STAMP)


def from_stamp(text: str) -> datetime:
    """The aware UTC datetime of a ``STAMP`` text."""
    return datetime.strptime(text, STAMP).replace(tzinfo=UTC)
