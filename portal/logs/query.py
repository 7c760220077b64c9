"""Log queries on PostgreSQL: filters -> one SQL statement, its rows streamed as they come.

Rows arrive ``itersize`` at a time (libpq's chunked rows mode; one at a time before libpq 17)
from one statement outside any transaction: a query matching millions of lines runs in bounded
memory with no result cap, and a small one costs a single round trip (a named cursor needed
five: begin, declare, fetch, close, rollback). ``follow`` re-polls a sliding window for live
tail, remembering what it printed so nothing is shown twice.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy.exc
from psycopg import sql

from portal.db.engine import describe_unreachable, get_engine, time_limit
from portal.db.follow import follow as following
from portal.errors import DatabaseUnavailable, PortalError, QueryTimeout
from portal.globs import like_pattern
from portal.logs.filters import LEVELS, LogQuery, parse_level
from portal.logs.format import Record
from portal.timeparse import from_stamp, parse_time

__all__ = [
    "LEVELS",
    "LogQuery",
    "parse_level",
    "stream",
    "tail",
    "follow",
    "tail_then_follow",
    "check_hosts",
    "query_frame",
]
_COLUMNS = {"host", "component", "level"}
ORDER = "time, source, seq"
ORDER_DESC = "time DESC, source DESC, seq DESC"
TS_SQL = """to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _glob(column: sql.Composable, pattern: str) -> tuple[sql.Composable, list[Any]]:
    """``*``/``?`` globs as LIKE (index-friendly); no wildcard means equality."""
    like = like_pattern(pattern)
    if like is None:
        return sql.SQL("{} = %s").format(column), [pattern]
    return sql.SQL("{} LIKE %s").format(column), [like]


def _any_of(parts: list[tuple[sql.Composable, list[Any]]]) -> tuple[sql.Composable, list[Any]]:
    clause = sql.SQL(" OR ").join(p[0] for p in parts)
    return sql.SQL("({})").format(clause), [v for p in parts for v in p[1]]


def _label(name: str) -> sql.Composable:
    if name in _COLUMNS:
        return sql.Identifier(name)
    return sql.SQL("(labels->>{})").format(sql.Literal(name))


def where(q: LogQuery) -> tuple[sql.Composable, list[Any]]:
    """The WHERE clause and its parameters for ``q``."""
    conds: list[tuple[sql.Composable, list[Any]]] = []
    if q.hosts:
        conds.append(_any_of([_glob(sql.Identifier("host"), h) for h in q.hosts]))
    if q.components:
        conds.append(_any_of([_glob(sql.Identifier("component"), c) for c in q.components]))
    if q.min_level and q.min_level != LEVELS[0]:
        wanted = list(LEVELS[LEVELS.index(q.min_level) :])
        conds.append((sql.SQL("level = ANY(%s)"), [wanted]))
    if q.since:
        conds.append((sql.SQL("time >= %s"), [q.since]))
    if q.until:
        conds.append((sql.SQL("time < %s"), [q.until]))
    if q.grep and q.regex:
        conds.append((sql.SQL("message ~* %s" if q.ignore_case else "message ~ %s"), [q.grep]))
    elif q.grep:  # plain text: no pattern can make the search slow
        message = "lower(message), lower(%s)" if q.ignore_case else "message, %s"
        conds.append((sql.SQL(f"strpos({message}) > 0"), [q.grep]))
    if q.selector:
        for m in q.selector.matchers:
            col = _label(m.label)
            if m.op == "=":
                conds.append((sql.SQL("{} = %s").format(col), [m.value]))
            elif m.op == "!=":
                conds.append((sql.SQL("{} IS DISTINCT FROM %s").format(col), [m.value]))
            else:
                neg = "NOT " if m.op == "!~" else ""
                regex = sql.SQL(neg + "(coalesce({}, '') ~ %s)").format(col)
                conds.append((regex, [f"^(?:{m.value})$"]))
        for f in q.selector.filters:
            line = {
                "|=": "strpos(message, %s) > 0",
                "!=": "strpos(message, %s) = 0",
                "|~": "message ~ %s",
                "!~": "message !~ %s",
            }[f.op]
            conds.append((sql.SQL(line), [f.value]))
    if not conds:
        return sql.SQL("TRUE"), []
    return sql.SQL(" AND ").join(c[0] for c in conds), [v for c in conds for v in c[1]]


def statement(q: LogQuery) -> tuple[sql.Composed, list[Any]]:
    """The full SELECT, oldest first (ties in file order) unless ``newest_first``, limited;
    tagged so that an operator finds log searches in ``pg_stat_activity``."""
    cond, params = where(q)
    stmt = sql.SQL(
        "/* portal_logs */ SELECT " + TS_SQL + ", host, component, level, message, labels::text, "
        "source, seq FROM log_lines WHERE {} ORDER BY {}"
    ).format(cond, sql.SQL(ORDER_DESC if q.newest_first else ORDER))
    if q.limit is not None:
        stmt = sql.SQL("{} LIMIT {}").format(stmt, sql.Literal(q.limit))
    return stmt, params


def _checkout(url: str) -> Any:
    """A pooled connection: long-lived callers (web, bench) skip a connect per query."""
    try:
        return get_engine(url).raw_connection()
    except sqlalchemy.exc.OperationalError as exc:
        raise DatabaseUnavailable(describe_unreachable(url, exc.orig or exc)) from None
    except psycopg.OperationalError as exc:  # raw_connection() does not always wrap it
        raise DatabaseUnavailable(describe_unreachable(url, exc)) from None


#: libpq 17 is the first to send rows in chunks; older ones stream them one by one
CHUNKED = psycopg.pq.version() >= 170000


def stream(url: str, q: LogQuery, itersize: int = 5000) -> Iterator[Record]:
    """Every matching record, oldest first, ``itersize`` rows a network read."""
    stmt, params = statement(q)
    pooled = _checkout(url)
    conn: psycopg.Connection = pooled.driver_connection
    was = conn.autocommit
    try:
        conn.autocommit = True  # one statement: no BEGIN/ROLLBACK round trips around it
        with conn.cursor() as cur:
            try:
                for row in cur.stream(stmt, params, size=itersize if CHUNKED else 1):
                    yield Record._make(row)
            except psycopg.errors.DataError as exc:  # e.g. a regex PostgreSQL cannot compile
                problem = str(exc).strip().splitlines()[0]
                raise PortalError(f"the log store rejected the query: {problem}") from None
            except psycopg.errors.QueryCanceled:  # the context's time limit (web requests)
                raise QueryTimeout(time_limit()) from None
    finally:
        try:
            conn.autocommit = was  # closing the stream early cancelled its statement
        except psycopg.Error:  # still busy or broken: not fit for the pool
            pooled.invalidate()
        pooled.close()  # back to the pool


def tail(url: str, q: LogQuery, lines: int) -> list[Record]:
    """The newest ``lines`` matching records, oldest first (read newest first, then reversed)."""
    if lines < 0:
        raise PortalError("--tail must be 0 or more")
    recs = list(stream(url, replace(q, limit=lines, newest_first=True)))
    recs.reverse()
    return recs


def _key(rec: Record) -> Any:
    return (rec.source, rec.seq, rec.ts) if rec.source else rec


def tail_then_follow(url: str, q: LogQuery, lines: int, **kw: Any) -> Iterator[Record]:
    """``tail -n N -f``: the newest ``lines`` records, then new ones as they arrive."""
    recs = tail(url, q, lines)
    yield from recs
    since, shown = q.since, set()
    if recs:
        since = from_stamp(recs[-1].ts)
        shown = {_key(r) for r in recs if r.ts == recs[-1].ts}
    for rec in follow(url, replace(q, since=since, limit=None), **kw):
        if _key(rec) not in shown:
            yield rec


def follow(
    url: str,
    q: LogQuery,
    poll: float = 1.0,
    lag: timedelta = timedelta(seconds=60),
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Record]:
    """Matching records as they arrive: history since ``q.since`` (default: the last ``lag``),
    then new ones. Lines that reach the store more than ``lag`` after their own time are missed.
    """
    return following(
        lambda start: stream(url, replace(q, since=start, until=None, limit=None)),
        key=_key,
        when=lambda rec: from_stamp(rec.ts),
        since=q.since,
        poll=poll,
        lag=lag,
        stop=stop,
    )


#: The hosts that ever stored a line: a skip scan over the ``(host, component, time)`` index
#: (one index probe per distinct host, not a scan of the lines), and the inventory's hosts.
KNOWN_HOSTS_SQL = """
WITH RECURSIVE seen(host) AS (
    (SELECT host FROM log_lines ORDER BY host LIMIT 1)
  UNION ALL
    SELECT (SELECT l.host FROM log_lines l WHERE l.host > seen.host ORDER BY l.host LIMIT 1)
    FROM seen WHERE seen.host IS NOT NULL
)
SELECT host, true FROM seen WHERE host IS NOT NULL
UNION ALL
SELECT name, false FROM hosts
"""


def known_hosts(url: str) -> tuple[list[str], list[str]]:
    """(hosts with at least one stored line, hosts in the inventory), each sorted."""
    pooled = _checkout(url)
    conn: psycopg.Connection = pooled.driver_connection
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = '30s'")
            rows = cur.execute(KNOWN_HOSTS_SQL).fetchall()
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        pooled.close()
    logged = sorted({h for h, has_lines in rows if has_lines})
    inventory = sorted({h for h, has_lines in rows if not has_lines})
    return logged, inventory


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """The regex of a ``*``/``?`` glob, as ``portal.globs.like_pattern`` reads it."""
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL)


def check_hosts(url: str, patterns: tuple[str, ...]) -> None:
    """``PortalError`` naming each ``--host`` for which no line was ever stored, with near names."""
    if not patterns:
        return
    logged, inventory = known_hosts(url)
    problems = []
    for pattern in patterns:
        is_glob = any(ch in pattern for ch in "*?")
        if is_glob and any(_glob_regex(pattern).fullmatch(h) for h in logged):
            continue
        if not is_glob and pattern in logged:
            continue
        if is_glob:
            problem = f"no host with stored log lines matches {pattern!r}"
        elif pattern in inventory:
            problem = f"host {pattern!r} is in the inventory but no log line was ever stored for it"
        else:
            problem = f"unknown host {pattern!r}: no log line was ever stored for it"
        stem = pattern.replace("*", "").replace("?", "")
        near = difflib.get_close_matches(stem, logged, n=5, cutoff=0.5)
        if near:
            problem += f" (near: {', '.join(near)})"
        elif logged:
            shown = ", ".join(logged[:10]) + (
                f" and {len(logged) - 10} more" if len(logged) > 10 else ""
            )
            problem += f" (hosts with logs: {shown})"
        else:
            problem += " (the log store is empty)"
        problems.append(problem)
    if problems:
        raise PortalError("; ".join(problems))


def query_frame(
    host: str | None = None,
    component: str | None = None,
    level: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    grep: str | None = None,
    selector: str | None = None,
    limit: int | None = 1000,
    database_url: str | None = None,
    regex: bool = False,
) -> Any:
    """Matching lines as a pandas DataFrame, for quicklook plugins (``portal.quicklook.logs``);
    ``grep`` is text the message contains, a regular expression with ``regex=True``."""
    import pandas as pd

    from portal import settings
    from portal.logs.selector import parse as parse_selector

    def when(value: datetime | str | None, what: str) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return parse_time(value, what)

    q = LogQuery(
        hosts=(host,) if host else (),
        components=(component,) if component else (),
        min_level=parse_level(level) if level else None,
        since=when(since, "since"),
        until=when(until, "until"),
        grep=grep or None,
        regex=regex,
        selector=parse_selector(selector) if selector else None,
        limit=limit,
    )
    url = database_url or settings.get().database_url
    recs = list(stream(url, q))
    frame = pd.DataFrame(recs, columns=list(Record._fields))
    frame["time"] = pd.to_datetime(frame["ts"], utc=True)
    return frame[["time", "host", "component", "level", "message", "labels"]]
