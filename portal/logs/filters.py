"""What a log query can filter on, parsed from CLI options or URL values into one clear error.

Kept apart from ``query`` (SQL and database access) so ``portal logs --help`` and request
validation import no database stack.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from portal.errors import PortalError
from portal.logs.selector import Selector
from portal.logs.selector import parse as parse_selector
from portal.timeparse import parse_time

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL_ALIASES = {"WARN": "WARNING", "ERR": "ERROR", "FATAL": "CRITICAL", "CRIT": "CRITICAL"}


@dataclass(frozen=True)
class LogQuery:
    """Everything ``portal logs`` and ``/api/logs`` can filter on; empty means no filter."""

    hosts: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    min_level: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    grep: str | None = None  # text the message contains (a regular expression with ``regex``)
    ignore_case: bool = False
    regex: bool = False
    selector: Selector | None = None
    limit: int | None = None
    newest_first: bool = False  # with ``limit``: the last lines of the range (a page's tail)


def parse_level(raw: str) -> str:
    """A minimum level name (case-insensitive, ``warn`` accepted) or a clear error."""
    name = raw.strip().upper()
    name = _LEVEL_ALIASES.get(name, name)
    if name not in LEVELS:
        raise PortalError(f"unknown level {raw!r}: use one of {', '.join(LEVELS)}")
    return name


def build_query(
    selector: str | None,
    hosts: Iterable[str],
    components: Iterable[str],
    level: str | None,
    since: str | None,
    until: str | None,
    grep: str | None,
    ignore_case: bool = False,
    limit: int | None = None,
    regex: bool = False,
) -> LogQuery:
    """Turn user input (CLI options or URL parameters) into a query, or one clear error."""
    now = datetime.now(UTC)
    if limit is not None and limit < 0:
        raise PortalError("--limit must be 0 or more")
    q = LogQuery(
        hosts=tuple(h for h in hosts if h),
        components=tuple(c for c in components if c),
        min_level=parse_level(level) if level else None,
        since=parse_time(since, "--since", now) if since else None,
        until=parse_time(until, "--until", now) if until else None,
        grep=grep or None,
        ignore_case=ignore_case,
        regex=regex,
        selector=parse_selector(selector) if selector else None,
        limit=limit,
    )
    if q.since and q.until and q.since >= q.until:
        raise PortalError("--since must be before --until")
    return q
