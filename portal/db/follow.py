"""Following a time-ordered table live (``--follow``, live pages): re-read a sliding window and
yield only what was not yielded before, so a row whose transaction commits a little late is
still shown, once."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

T = TypeVar("T")


def follow(
    fetch: Callable[[datetime], Iterable[T]],
    key: Callable[[T], Hashable],
    when: Callable[[T], datetime],
    since: datetime | None = None,
    poll: float = 1.0,
    lag: timedelta = timedelta(seconds=60),
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[T]:
    """Rows from ``fetch(start)`` since ``since`` (default: the last ``lag``), then new ones.

    Each poll re-reads from ``lag`` before the newest row seen; a row that reaches the table
    more than ``lag`` after its own time is missed.
    """
    start = since or datetime.now(UTC) - lag
    seen: dict[Hashable, datetime] = {}
    newest = start
    while True:
        for row in fetch(max(start, newest - lag)):
            k = key(row)
            if k in seen:
                continue
            seen[k] = t = when(row)
            newest = max(newest, t)
            yield row
        horizon = newest - lag
        seen = {k: t for k, t in seen.items() if t >= horizon}
        if stop():
            return
        time.sleep(poll)
