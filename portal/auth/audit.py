"""The append-only audit log: one entry per change of state, login and refusal.

``record`` is the only writer. The table refuses UPDATE, DELETE and TRUNCATE at the database
level, so an entry once written stays as written; retention drops whole partitions.
``query`` and ``follow`` read it back, oldest first; ``formatter`` gives the one-line text and
JSON-lines forms ``portal audit`` prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from portal.auth.identity import Identity
from portal.db.engine import describe_unreachable, get_engine
from portal.db.follow import follow as following
from portal.db.tables import audit_log
from portal.errors import DatabaseUnavailable, PortalError
from portal.globs import like_pattern
from portal.timeparse import stamp

if TYPE_CHECKING:
    import psycopg

FORMATS = ("text", "jsonl")


@dataclass(frozen=True)
class Entry:
    """What happened, to what, and how it ended; the actor comes from an ``Identity``."""

    action: str  # e.g. login, login.failed, user.add, token.revoke, alert.received
    target: str
    outcome: str = "ok"  # ok | refused | failed | error: <one line>
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


@dataclass(frozen=True)
class Logged:
    """A stored audit entry, as ``query`` returns it."""

    id: int
    time: datetime
    actor: str
    role: str
    source: str
    action: str
    target: str
    params: dict[str, Any]
    reason: str
    outcome: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str


_COLUMNS = tuple(Logged.__dataclass_fields__)
_INSERT_SQL = (
    "INSERT INTO audit_log (time, actor, role, source, action, target, params, reason, "
    "outcome, before, after, request_id) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)


def record(
    database_url: str,
    who: Identity,
    entry: Entry,
    conn: sa.Connection | psycopg.Connection | None = None,
) -> int:
    """Append one entry (in ``conn``'s transaction when given); returns its id.

    ``conn`` may be a SQLAlchemy connection or a raw psycopg one (the alerts webhook writes
    its events and their audit entry in one psycopg transaction).
    """
    row = {
        "time": datetime.now(UTC),
        "actor": who.label,
        "role": who.role or "",
        "source": who.address,
        "action": entry.action,
        "target": entry.target,
        "params": entry.params,
        "reason": entry.reason,
        "outcome": entry.outcome,
        "before": entry.before,
        "after": entry.after,
        "request_id": who.request_id,
    }
    if conn is not None and not isinstance(conn, sa.Connection):
        from psycopg.types.json import Jsonb

        values = [
            Jsonb(v) if k in ("params", "before", "after") and v is not None else v
            for k, v in row.items()
        ]
        got = conn.execute(_INSERT_SQL, values).fetchone()
        assert got is not None
        return int(got[0])
    stmt = sa.insert(audit_log).values(**row).returning(audit_log.c.id)
    if conn is not None:
        return int(conn.execute(stmt).scalar_one())
    with get_engine(database_url).begin() as own:
        return int(own.execute(stmt).scalar_one())


def _glob(column: sa.ColumnElement[str], pattern: str) -> sa.ColumnElement[bool]:
    """``*``/``?`` globs as LIKE (a bound parameter); no wildcard means equality."""
    like = like_pattern(pattern)
    return column == pattern if like is None else column.like(like, escape="\\")


def statement(
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    after_id: int | None = None,
    newest_first: bool = False,
) -> sa.Select[Any]:
    """The SELECT for these filters: oldest first (``newest_first`` for pages), limited."""
    t = audit_log
    stmt = sa.select(*(t.c[name] for name in _COLUMNS))
    for column, pattern in ((t.c.actor, actor), (t.c.action, action), (t.c.target, target)):
        if pattern:
            stmt = stmt.where(_glob(column, pattern))
    if since is not None:
        stmt = stmt.where(t.c.time >= since)
    if until is not None:
        stmt = stmt.where(t.c.time < until)
    if after_id is not None:
        stmt = stmt.where(t.c.id > after_id)
    order = (t.c.time.desc(), t.c.id.desc()) if newest_first else (t.c.time, t.c.id)
    stmt = stmt.order_by(*order)
    if limit is not None:
        if limit < 0:
            raise PortalError(f"limit {limit} must be 0 or more")
        stmt = stmt.limit(limit)
    return stmt


def query(
    database_url: str,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    after_id: int | None = None,
    *,
    newest_first: bool = False,
) -> list[Logged]:
    """Entries matching every given filter (globs such as ``user:*``), oldest first."""
    stmt = statement(actor, action, target, since, until, limit, after_id, newest_first)
    try:
        with get_engine(database_url).connect() as conn:
            return [Logged(*row) for row in conn.execute(stmt)]
    except sa.exc.OperationalError as exc:
        raise DatabaseUnavailable(describe_unreachable(database_url, exc.orig or exc)) from None


def follow(
    database_url: str,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    poll: float = 1.0,
    lag: timedelta = timedelta(seconds=60),
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Logged]:
    """Matching entries as they arrive: those since ``since`` (default: the last ``lag``), then
    new ones (``portal.db.follow``); one committed more than ``lag`` after its time is missed."""
    return following(
        lambda start: query(database_url, actor, action, target, since=start),
        key=lambda entry: entry.id,
        when=lambda entry: entry.time,
        since=since,
        poll=poll,
        lag=lag,
        stop=stop,
    )


# -- output ------------------------------------------------------------------------------------
iso = stamp  # the one printed time form (portal.timeparse)


def _word(value: str) -> str:
    """A text column as one space-free token: ``-`` when empty, JSON-quoted when it has spaces."""
    if not value:
        return "-"
    if value.startswith('"') or any(ch.isspace() for ch in value):
        return json.dumps(value)
    return value


def text_line(e: Logged) -> str:
    """``<time> <actor> <role> <source> <action> <target> <outcome> <reason> <params json>``."""
    words = (e.actor, e.role, e.source, e.action, e.target, e.outcome, e.reason)
    params = json.dumps(e.params, sort_keys=True, default=str)
    return f"{iso(e.time)} {' '.join(_word(w) for w in words)} {params}\n"


def as_dict(e: Logged) -> dict[str, Any]:
    return {**{name: getattr(e, name) for name in _COLUMNS}, "time": iso(e.time)}


def json_line(e: Logged) -> str:
    return json.dumps(as_dict(e), default=str) + "\n"


def formatter(fmt: str) -> Callable[[Logged], str]:
    """The line function for ``fmt`` (``text`` or ``jsonl``)."""
    return json_line if fmt == "jsonl" else text_line
