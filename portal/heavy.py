"""Heavy queries a request runs (log search): a few at once per user, cancelled when the client
leaves.

A slot is an ``flock`` on one of ``PORTAL_HEAVY_QUERIES_PER_USER`` files per identity under the
data dir, so the limit holds across gunicorn workers and a crashed worker frees its slots. While
a guarded query runs, a watcher thread peeks at the client's socket: when the client has gone,
it cancels every database connection the request checked out (PostgreSQL stops the statement
at once instead of running until its time limit). Kept outside ``portal.web`` like
``portal.routes``: capabilities guard their own routes.
"""

from __future__ import annotations

import contextvars
import fcntl
import hashlib
import logging
import select
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from portal.errors import PortalError
from portal.settings import Setting

log = logging.getLogger(__name__)

ENV = "PORTAL_HEAVY_QUERIES_PER_USER"
DEFAULT = 3
POLL_S = 0.25  # how often the watcher looks at the client's socket


def _count(name: str, raw: str) -> int:
    from portal.errors import SettingsError

    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"{raw!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise SettingsError(name, f"{value} is not between 1 and 1000")
    return value


SETTING = Setting(
    ENV,
    str(DEFAULT),
    _count,
    "Log searches one user (or one anonymous address) may run at once; more get 429.",
)


class TooBusy(PortalError):
    """Every slot of this identity is taken: the request is refused with 429."""


def limit(extra: Mapping[str, Any]) -> int:
    """The configured number of slots (``settings.extra``; the default without the plugin)."""
    return int(extra.get(ENV, DEFAULT))


def _take(directory: Path, who: str, slots: int) -> IO[bytes]:
    """An open, locked slot file of ``who``; ``TooBusy`` when all ``slots`` are held."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = hashlib.sha256(who.encode("utf-8", "replace")).hexdigest()[:16]
    for n in range(slots):
        fh = open(directory / f"{stem}.{n}", "ab")  # noqa: SIM115 - held while the query runs
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        return fh
    raise TooBusy(
        f"{slots} log {'query' if slots == 1 else 'queries'} of yours already running "
        f"({ENV}={slots}); try again when one has finished"
    )


# -- cancellation when the client leaves ------------------------------------------------------
_watched: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "portal_heavy_connections", default=None
)


_listen_lock = threading.Lock()
_listening = False


def _listen() -> None:
    """Watch pooled checkouts from the first guard on (the CLI must not import SQLAlchemy)."""
    global _listening
    with _listen_lock:
        if not _listening:
            import sqlalchemy as sa

            sa.event.listen(sa.pool.Pool, "checkout", _checked_out)
            _listening = True


def _checked_out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Every pooled connection a guarded request checks out can be cancelled by its watcher."""
    conns = _watched.get()
    if conns is not None:
        conns.append(dbapi_conn)


def client_gone(sock: socket.socket) -> bool:
    """True when the peer closed its side (a readable socket with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


def _watch(sock: socket.socket, conns: list[Any], done: threading.Event) -> None:
    import psycopg

    while not done.wait(POLL_S):
        if client_gone(sock):
            for conn in list(conns):
                if isinstance(conn, psycopg.Connection) and not conn.closed:
                    try:
                        conn.cancel_safe(timeout=5)
                    except (psycopg.Error, OSError) as exc:
                        log.warning("could not cancel a query of a client that left: %s", exc)
            log.info("client left: %d query connection(s) cancelled", len(conns))
            return


class Guard:
    """One slot of ``who`` and a watcher of the client's socket, until ``close``.

    Construct it in the request's thread before the query starts (its checkouts are watched);
    ``wrap`` a streamed body so both end with the response.
    """

    def __init__(self, data_dir: Path, who: str, slots: int, environ: dict[str, Any]) -> None:
        _listen()
        self._slot: IO[bytes] | None = _take(data_dir / "run" / "heavy", who, slots)
        self._done = threading.Event()
        self._conns: list[Any] = []
        self._token = _watched.set(self._conns)
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, socket.socket):
            threading.Thread(
                target=_watch, args=(sock, self._conns, self._done), daemon=True
            ).start()

    def close(self) -> None:
        """Free the slot and stop watching (idempotent)."""
        if self._slot is None:
            return
        self._done.set()
        self._slot.close()  # closing the file releases its lock
        self._slot = None
        try:
            _watched.reset(self._token)
        except ValueError:  # closed from another context (the body's iteration)
            _watched.set(None)

    def wrap(self, body: Iterable[str]) -> Iterator[str]:
        """``body``, then ``close``; also when the response is closed unread (a HEAD request)."""
        return _Guarded(iter(body), self)


class _Guarded:
    """An iterator that closes its guard when exhausted or closed (a generator function would
    not run its ``finally`` when closed before its first item)."""

    def __init__(self, inner: Iterator[str], guard: Guard) -> None:
        self._inner, self._guard = inner, guard

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            return next(self._inner)
        except BaseException:
            self._guard.close()
            raise

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        try:
            if close is not None:
                close()
        finally:
            self._guard.close()


def identity_key(kind: str, actor: str, address: str) -> str:
    """Whose slots: a user or token by name; anonymous visitors by address."""
    return f"{kind}:{actor}" + (f"@{address}" if kind == "anonymous" else "")
