"""The one Loki client: push (gzip JSON, retry with back-off) and paged ``query_range``.

``query_range`` is paged forward and split into windows shorter than Loki's default 721 h
limit, so callers get every line of any range, not the first 5,000.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from portal.errors import BackendUnavailable, PortalError
from portal.logs.format import Record
from portal.logs.query import LEVELS, LogQuery
from portal.redact import redact_url
from portal.timeparse import stamp

log = logging.getLogger(__name__)

PUSH_PATH = "/loki/api/v1/push"
QUERY_RANGE_PATH = "/loki/api/v1/query_range"
PAGE_LIMIT = 5000
WINDOW = timedelta(hours=720)


@dataclass(frozen=True)
class Entry:
    """One log line as Loki sees it: stream labels, nanosecond time, line."""

    labels: Mapping[str, str]
    time_ns: int
    line: str

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.time_ns / 1e9, UTC)


def to_ns(when: datetime) -> int:
    """Nanoseconds since the epoch, exact (no float rounding for microsecond times)."""
    delta = when.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def push_body(entries: Iterable[Entry]) -> dict[str, Any]:
    """Group entries by label set into Loki's ``streams`` push payload, keeping their order."""
    streams: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
    for entry in entries:
        key = tuple(sorted(entry.labels.items()))
        streams.setdefault(key, []).append([str(entry.time_ns), entry.line])
    return {"streams": [{"stream": dict(k), "values": v} for k, v in streams.items()]}


class LokiClient:
    """A small synchronous client; ``retries`` bounds each push's attempts."""

    def __init__(self, url: str, timeout: float = 10.0, retries: int = 5) -> None:
        if not url:
            raise PortalError("Loki is not configured: set PORTAL_LOKI_URL")
        self.url = url.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LokiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def push(self, entries: Sequence[Entry]) -> None:
        """POST entries; retries 429/5xx and connection errors with exponential back-off."""
        if not entries:
            return
        body = gzip.compress(json.dumps(push_body(entries)).encode())
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        delay = 0.2
        for attempt in range(1, self.retries + 1):
            try:
                resp = self._http.post(self.url + PUSH_PATH, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 300:
                    return
                problem = f"HTTP {resp.status_code}: {resp.text.strip()[:200]}"
                if resp.status_code < 500 and resp.status_code != 429:
                    raise PortalError(f"Loki refused the push ({problem})")
            if attempt == self.retries:
                raise BackendUnavailable(f"Loki push to {redact_url(self.url)} failed: {problem}")
            log.warning("Loki push attempt %d failed (%s); retrying", attempt, problem)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def query_range(
        self,
        logql: str,
        start: datetime,
        end: datetime,
        limit: int | None = None,
        page: int = PAGE_LIMIT,
    ) -> Iterator[Entry]:
        """Every entry matching ``logql`` in [start, end), oldest first, paged and windowed."""
        sent = 0
        win_start = start
        while win_start < end:
            win_end = min(end, win_start + WINDOW)
            for entry in self._window(logql, to_ns(win_start), to_ns(win_end), page):
                yield entry
                sent += 1
                if limit is not None and sent >= limit:
                    return
            win_start = win_end

    def _window(self, logql: str, start_ns: int, end_ns: int, page: int) -> Iterator[Entry]:
        """Forward pages; the next page starts at the last timestamp, skipping lines seen there."""
        seen_at_edge: set[tuple[tuple[tuple[str, str], ...], str]] = set()
        while True:
            entries = self._page(logql, start_ns, end_ns, page)
            fresh = [
                e for e in entries if not (e.time_ns == start_ns and _ident(e) in seen_at_edge)
            ]
            yield from fresh
            if len(entries) < page or not entries:
                return
            last = entries[-1].time_ns
            edge = {_ident(e) for e in entries if e.time_ns == last}
            if last == start_ns:
                seen_at_edge |= edge
                if not fresh:
                    raise PortalError(
                        f"Loki returned more than {page} lines with one timestamp; "
                        "raise the page size"
                    )
            else:
                seen_at_edge = edge
            start_ns = last

    def _page(self, logql: str, start_ns: int, end_ns: int, limit: int) -> list[Entry]:
        params = {
            "query": logql,
            "start": str(start_ns),
            "end": str(end_ns),
            "limit": str(limit),
            "direction": "forward",
        }
        try:
            resp = self._http.get(self.url + QUERY_RANGE_PATH, params=params)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"Loki at {redact_url(self.url)} does not answer ({exc})"
            ) from None
        if resp.status_code != 200:
            raise PortalError(f"Loki query failed: HTTP {resp.status_code}: {resp.text.strip()}")
        data = resp.json().get("data", {})
        if data.get("resultType") != "streams":
            raise PortalError("Loki query returned no log streams (is it a metric query?)")
        entries = [
            Entry(stream.get("stream", {}), int(ts), line)
            for stream in data.get("result", [])
            for ts, line in stream.get("values", [])
        ]
        entries.sort(key=lambda e: e.time_ns)  # streams arrive one after another: merge them
        return entries


def _ident(entry: Entry) -> tuple[tuple[tuple[str, str], ...], str]:
    """What makes an entry distinct within one timestamp: its stream and its line."""
    return tuple(sorted(entry.labels.items())), entry.line


def _glob_regex(patterns: Sequence[str]) -> str:
    parts = [re.escape(p).replace(r"\*", ".*").replace(r"\?", ".") for p in patterns]
    return "|".join(parts)


def logql_for(q: LogQuery) -> str:
    """The LogQL equivalent of the CLI's filters (labels pushed by the shipper)."""
    matchers = []
    if q.hosts:
        matchers.append(f"host=~{json.dumps(_glob_regex(q.hosts))}")
    if q.components:
        matchers.append(f"component=~{json.dumps(_glob_regex(q.components))}")
    if q.min_level and q.min_level != LEVELS[0]:
        wanted = "|".join(LEVELS[LEVELS.index(q.min_level) :])
        matchers.append(f"level=~{json.dumps(wanted)}")
    stages = ""
    if q.selector:
        matchers += [f"{m.label}{m.op}{json.dumps(m.value)}" for m in q.selector.matchers]
        stages = "".join(f" {f.op} {json.dumps(f.value)}" for f in q.selector.filters)
    if q.grep and not q.regex and not q.ignore_case:
        stages += f" |= {json.dumps(q.grep)}"
    elif q.grep:
        pattern = q.grep if q.regex else re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", q.grep)
        stages += f" |~ {json.dumps(('(?i)' if q.ignore_case else '') + pattern)}"
    if not matchers:
        matchers.append('host=~".+"')  # Loki needs one matcher that excludes the empty value
    return "{" + ",".join(matchers) + "}" + stages


def records(url: str, q: LogQuery) -> Iterator[Record]:
    """Loki's answer to ``q`` in the store's record shape, oldest first."""
    if q.since is None:
        raise PortalError("a Loki query needs --since")
    end = q.until or datetime.now(UTC)
    with LokiClient(url) as client:
        for e in client.query_range(logql_for(q), q.since, end, limit=q.limit):
            labels = dict(e.labels)
            host = labels.pop("host", "-")
            component = labels.pop("component", "")
            level = labels.pop("level", "INFO")
            ts = stamp(e.time)
            yield Record(ts, host, component, level, e.line, json.dumps(labels), None, None)
