"""The one place that turns ``PORTAL_DATABASE_URL`` into connections."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from portal.errors import DatabaseUnavailable, SettingsError
from portal.redact import redact_url

_engines: dict[str, Engine] = {}
_lock = threading.Lock()

#: Longest a statement may run on connections handed out in this context (seconds); None: no
#: limit. The web app sets it for each request, so every query a client triggers is cancelled
#: by PostgreSQL itself after that long, even when the client has gone.
_time_limit: ContextVar[float | None] = ContextVar("portal_statement_timeout", default=None)


#: (primary URL, replica URL) while this context only reads: ``get_engine(primary)`` then hands
#: out the replica's engine. The web app sets it for requests at viewer level (which may not
#: change anything); writers, the CLI and components always get the primary.
_reads: ContextVar[tuple[str, str] | None] = ContextVar("portal_read_replica", default=None)


def set_read_replica(primary: str, replica: str) -> None:
    """Send this context's ``get_engine(primary)`` to ``replica`` (empty: to the primary)."""
    _reads.set((primary, replica) if replica else None)


def clear_read_replica() -> None:
    _reads.set(None)


@contextmanager
def reading_from(primary: str, replica: str) -> Iterator[None]:
    """``set_read_replica`` for a block (scripts, tests), restored afterwards."""
    token = _reads.set((primary, replica) if replica else None)
    try:
        yield
    finally:
        _reads.reset(token)


def time_limit() -> float | None:
    """The statement time limit of this context, in seconds (None: none)."""
    return _time_limit.get()


def set_time_limit(seconds: float | None) -> None:
    """Limit every statement on connections checked out from here on in this context."""
    _time_limit.set(seconds)


@contextmanager
def limited(seconds: float | None) -> Iterator[None]:
    """``set_time_limit`` for a block (scripts, tests), restored afterwards."""
    token = _time_limit.set(seconds)
    try:
        yield
    finally:
        _time_limit.reset(token)


#: A pooled connection idle longer than this is pinged before use; one used more recently is
#: pinged only when its socket has something to read (the server closed it or said goodbye).
PING_AFTER_S = 30.0
POOL_SIZE = 8
POOL_OVERFLOW = 4


def _readable(fd: int) -> bool:
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True  # a closed descriptor: let the ping find out


def _checked_in(_dbapi_conn: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_stale(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """On checkout: a round trip only for a connection that may be dead, not on every request
    (``pool_pre_ping`` pings always, which doubled the round trips of a small query)."""
    if dbapi_conn.closed or dbapi_conn.broken:
        raise sa.exc.DisconnectionError("connection closed")
    if dbapi_conn.read_only is False:
        # SQLAlchemy resets a read-only connection (quicklooks) to an explicit read-write one,
        # which a replica refuses at BEGIN: back to the server's default instead
        dbapi_conn.read_only = None
    idle = time.monotonic() - record.info.get("checked_in", 0.0)
    if idle < PING_AFTER_S and not _readable(dbapi_conn.fileno()):
        return
    try:
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT 1")
        dbapi_conn.rollback()
    except psycopg.Error as exc:
        raise sa.exc.DisconnectionError(str(exc)) from None


def _timeout_ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _apply_limit(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """On checkout: the connection's ``statement_timeout`` is this context's limit."""
    want = _time_limit.get()
    if record.info.get("statement_timeout", None) == want:
        return
    with dbapi_conn.cursor() as cur:
        if want is None:
            cur.execute("RESET statement_timeout")
        else:
            cur.execute(f"SET statement_timeout = {_timeout_ms(want)}")
    dbapi_conn.commit()  # a session setting: kept after the transaction
    record.info["statement_timeout"] = want


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg://`` (psycopg 3 is the only driver)."""
    parts = urlsplit(url)
    scheme = "postgresql+psycopg" if parts.scheme in ("postgresql", "postgres") else parts.scheme
    return urlunsplit((scheme, *parts[1:]))


def libpq_dsn(url: str) -> str:
    """A URL psycopg's ``connect`` accepts (no ``+psycopg`` driver suffix)."""
    return (
        make_url(sqlalchemy_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def database_name(url: str) -> str:
    return make_url(sqlalchemy_url(url)).database or "postgres"


def get_engine(url: str) -> Engine:
    """A pooled engine per URL, shared by the whole process (the read replica's, while this
    context only reads and one is configured)."""
    route = _reads.get()
    if route is not None and url == route[0]:
        url = route[1]
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = sa.create_engine(
                sqlalchemy_url(url),
                pool_size=POOL_SIZE,
                max_overflow=POOL_OVERFLOW,
                pool_timeout=10,
                connect_args={"connect_timeout": 5, "application_name": "obsportal"},
            )
            sa.event.listen(engine, "connect", _checked_in)  # fresh: no ping needed
            sa.event.listen(engine, "checkin", _checked_in)
            sa.event.listen(engine, "checkout", _ping_if_stale)
            sa.event.listen(engine, "checkout", _apply_limit)
            _engines[url] = engine
        return engine


def pool_usage(url: str) -> tuple[int, int] | None:
    """(connections in use, most the pool hands out) for ``url``; None before its first use."""
    with _lock:
        engine = _engines.get(url)
    if engine is None:
        return None
    pool: Any = engine.pool
    return int(pool.checkedout()), POOL_SIZE + POOL_OVERFLOW


def dispose_all() -> None:
    """Close every pooled connection (tests, forked workers)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def connect_raw(url: str, autocommit: bool = True, timeout: int = 5) -> psycopg.Connection:
    """A dedicated psycopg connection outside the pool (LISTEN, long COPY streams), with this
    context's statement time limit."""
    limit = _time_limit.get()
    extra: dict[str, Any] = {}
    if limit is not None:
        extra["options"] = f"-c statement_timeout={_timeout_ms(limit)}"
    try:
        return psycopg.connect(
            libpq_dsn(url),
            autocommit=autocommit,
            connect_timeout=timeout,
            application_name="obsportal",
            **extra,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(describe_unreachable(url, exc)) from None


def describe_unreachable(url: str, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot connect to {redact_url(url)} ({first})"


def is_reachable(url: str, timeout: int = 3) -> bool:
    try:
        with psycopg.connect(libpq_dsn(url), connect_timeout=timeout):
            return True
    except psycopg.Error:
        return False


def server_reachable(url: str, timeout: int = 3) -> bool:
    """True when the server answers, even if the database itself does not exist yet."""
    try:
        with psycopg.connect(_maintenance_dsn(url), connect_timeout=timeout):
            return True
    except psycopg.Error:
        return False


def _maintenance_dsn(url: str) -> str:
    return (
        make_url(sqlalchemy_url(url))
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )


def ensure_database(url: str) -> bool:
    """Create the URL's database when missing (idempotent); True when it was created."""
    name = database_name(url)
    try:
        with psycopg.connect(_maintenance_dsn(url), autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists:
                return False
            conn.execute(f'CREATE DATABASE "{name}"')
            return True
    except psycopg.errors.DuplicateDatabase:
        return False
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(describe_unreachable(url, exc)) from None
    except psycopg.Error as exc:
        raise SettingsError(
            "PORTAL_DATABASE_URL", f"cannot create database {name!r}: {exc}"
        ) from None


def drop_database(url: str) -> None:
    """Drop the URL's database, closing other sessions first (tests and benchmarks only)."""
    name = database_name(url)
    dispose_all()
    with psycopg.connect(_maintenance_dsn(url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
