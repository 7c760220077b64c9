"""The one SSH client of the portal (asyncssh): strict host keys, one connection per host.

Keys, ``known_hosts`` and the login user come from settings (``PORTAL_OPS_SSH_KEY``,
``PORTAL_OPS_KNOWN_HOSTS``, ``PORTAL_OPS_SSH_USER``). A host whose key is not in
``known_hosts`` is refused with one line; nothing is ever accepted on first use. The client
runs its own event loop in a background thread so that synchronous callers (the ops worker,
the CLI, a thread pool running a batch of hosts at once) share its connections.
"""

from __future__ import annotations

import asyncio
import getpass
import shlex
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from portal.errors import PortalError
from portal.ops.executor import Result, Target


class SshError(PortalError):
    """A host cannot be reached or refused us: one line naming the host and the cause."""


@dataclass(frozen=True)
class SshConfig:
    """Where the client key and the trusted host keys are, and whom to log in as."""

    key: Path | None  # None: the user's default keys (~/.ssh/id_*)
    known_hosts: Path
    user: str = ""  # empty: the OS user running the worker
    connect_timeout: float = 10.0

    @classmethod
    def from_settings(cls, extra: dict[str, Any] | Any) -> SshConfig:
        """From ``settings.extra`` (the ops plugin declares these settings)."""
        return cls(
            extra.get("PORTAL_OPS_SSH_KEY"),
            extra.get("PORTAL_OPS_KNOWN_HOSTS") or Path("~/.ssh/known_hosts").expanduser(),
            extra.get("PORTAL_OPS_SSH_USER") or "",
            float(extra.get("PORTAL_OPS_CONNECT_TIMEOUT") or 10.0),
        )


class SshClient:
    """Runs commands on hosts over SSH, reusing one connection per host."""

    def __init__(self, config: SshConfig) -> None:
        self.config = config
        self._conns: dict[Target, asyncssh.SSHClientConnection] = {}
        self._locks: dict[Target, asyncio.Lock] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="ssh")
        self._thread.start()

    # -- synchronous API -----------------------------------------------------------------------
    def run(self, target: Target, argv: Sequence[str], timeout: float) -> Result:
        """Run ``argv`` (quoted for the remote shell) on ``target``; waits at most ``timeout``."""
        return self.submit(target, argv, timeout).result()

    def submit(self, target: Target, argv: Sequence[str], timeout: float) -> Future[Result]:
        """Start ``argv`` on ``target`` and return at once (for batches run side by side)."""
        return asyncio.run_coroutine_threadsafe(self._run(target, argv, timeout), self._loop)

    def close(self) -> None:
        """Close every connection and stop the client's loop."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def connected(self) -> list[Target]:
        """Hosts with an open connection (reuse is visible to tests and the status command)."""
        return [t for t, c in self._conns.items() if not c.is_closed()]

    # -- in the loop ---------------------------------------------------------------------------
    async def _close_all(self) -> None:
        for conn in list(self._conns.values()):
            conn.close()
            await conn.wait_closed()
        self._conns.clear()

    async def _connection(self, target: Target) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(target, asyncio.Lock())
        async with lock:
            conn = self._conns.get(target)
            if conn is not None and not conn.is_closed():
                return conn
            conn = await self._connect(target)
            self._conns[target] = conn
            return conn

    async def _connect(self, target: Target) -> asyncssh.SSHClientConnection:
        cfg = self.config
        where = f"host {target.name} ({target.address}:{target.port})"
        if not cfg.known_hosts.is_file():
            raise SshError(f"{where}: known_hosts file {cfg.known_hosts} does not exist")
        options: dict[str, Any] = {
            "port": target.port,
            "username": cfg.user or getpass.getuser(),
            "known_hosts": str(cfg.known_hosts),
            "connect_timeout": cfg.connect_timeout,
            "agent_path": None,
        }
        if cfg.key is not None:
            options["client_keys"] = [str(cfg.key)]
        try:
            return await asyncssh.connect(target.address, **options)
        except asyncssh.HostKeyNotVerifiable:
            raise SshError(
                f"{where}: its host key is not in {cfg.known_hosts}; refusing to connect "
                "(check the key, then add it)"
            ) from None
        except asyncssh.PermissionDenied:
            raise SshError(f"{where}: the SSH login was refused (key {cfg.key})") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SshError(f"{where}: cannot connect ({text})") from None

    async def _run(self, target: Target, argv: Sequence[str], timeout: float) -> Result:
        conn = await self._connection(target)
        command = shlex.join(argv)
        try:
            done = await conn.run(command, check=False, timeout=timeout)
        except asyncssh.TimeoutError as exc:
            return Result(
                124,
                _text(exc.stdout),
                _text(exc.stderr) + f"\ntimed out after {timeout:g} s",
                timed_out=True,
            )
        except (OSError, asyncssh.Error) as exc:  # connection lost mid-command (e.g. reboot)
            self._conns.pop(target, None)
            return Result(255, "", f"connection lost: {exc}", lost=True)
        status = done.exit_status if done.exit_status is not None else 255
        return Result(status, _text(done.stdout), _text(done.stderr))


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
