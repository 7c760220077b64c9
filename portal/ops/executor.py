"""Executors: what actually runs a rendered command on a host (SSH), or only says it would.

Every executor has ``run(host, argv, timeout) -> Result``. ``SshExecutor`` goes through the one
SSH client (``portal.ops.ssh``); ``DryRunExecutor`` records the exact command line per host and
runs nothing; ``LocalExecutor`` runs ``where: local`` verbs (wake) on this machine, never
through a shell. ``targets`` turns inventory host names into addresses and SSH ports.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa

from portal.db.engine import get_engine
from portal.db.tables import hosts
from portal.errors import PortalError
from portal.ops.templates import PATTERNS, shown

if TYPE_CHECKING:
    from portal.ops.ssh import SshConfig

#: The inventory label holding a host's SSH port (the ``hosts`` table has no column for it).
SSH_PORT_LABEL = "ssh_port"
DEFAULT_SSH_PORT = 22


@dataclass(frozen=True)
class Target:
    """Where a host's SSH server is: inventory name, address, port."""

    name: str
    address: str
    port: int = DEFAULT_SSH_PORT


@dataclass(frozen=True)
class Result:
    """What a command did: exit status, captured output; ``timed_out``/``lost`` say why not."""

    exit_status: int
    stdout: str
    stderr: str
    timed_out: bool = False
    lost: bool = False  # the connection dropped mid-command (a reboot does that)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def summary(self) -> str:
        """One line for a step's detail: status and the last line of output."""
        last = (self.stderr.strip() or self.stdout.strip()).splitlines()
        tail = f": {last[-1][:200]}" if last else ""
        return f"exit {self.exit_status}{tail}"


class Executor(Protocol):
    """Runs one rendered command on one host."""

    def run(self, host: Target, argv: Sequence[str], timeout: float) -> Result: ...

    def close(self) -> None: ...


def targets(database_url: str, names: Iterable[str]) -> dict[str, Target]:
    """The SSH targets of inventory hosts: ``hosts.address`` and ``labels->>'ssh_port'`` (22).

    An unknown or malformed name is one clear error, before any connection.
    """
    wanted = list(dict.fromkeys(names))
    for name in wanted:
        if not PATTERNS["host"].match(name):
            raise PortalError(f"host {name!r} is invalid: it must match {PATTERNS['host'].pattern}")
    if not wanted:
        return {}
    query = sa.select(hosts.c.name, hosts.c.address, hosts.c.labels).where(hosts.c.name.in_(wanted))
    with get_engine(database_url).connect() as conn:
        rows = {r.name: r for r in conn.execute(query)}
    out: dict[str, Target] = {}
    for name in wanted:
        row = rows.get(name)
        if row is None:
            raise PortalError(f"host {name!r} is not in the inventory")
        raw_port = (row.labels or {}).get(SSH_PORT_LABEL, DEFAULT_SSH_PORT)
        try:
            port = int(raw_port)
        except (TypeError, ValueError):
            port = 0
        if not 1 <= port <= 65535:
            raise PortalError(f"host {name!r}: label {SSH_PORT_LABEL}={raw_port!r} is not a port")
        if not PATTERNS["address"].match(row.address):
            raise PortalError(f"host {name!r}: address {row.address!r} is invalid")
        out[name] = Target(name, row.address, port)
    return out


class SshExecutor:
    """Runs commands over SSH (one connection per host, reused)."""

    def __init__(self, config: SshConfig) -> None:
        from portal.ops.ssh import SshClient

        self.client = SshClient(config)

    def run(self, host: Target, argv: Sequence[str], timeout: float) -> Result:
        return self.client.run(host, argv, timeout)

    def close(self) -> None:
        self.client.close()


@dataclass
class DryRunExecutor:
    """Runs nothing: records (and hands to ``say``) each host's exact command line."""

    say: Callable[[str], None] | None = None
    commands: list[tuple[str, str]] = field(default_factory=list)  # (host, command line)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, host: Target, argv: Sequence[str], timeout: float) -> Result:
        line = shown(list(argv))
        with self._lock:
            self.commands.append((host.name, line))
        if self.say is not None:
            self.say(f"{host.name}: would run: {line}")
        return Result(0, "", "")

    def by_host(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for host, line in self.commands:
            out.setdefault(host, []).append(line)
        return out

    def close(self) -> None:
        pass


class LocalExecutor:
    """Runs ``where: local`` verbs (e.g. wake) on the worker's machine, as an argv (no shell)."""

    def run(self, host: Target, argv: Sequence[str], timeout: float) -> Result:
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout if isinstance(exc.stdout, str) else ""
            return Result(124, out, f"timed out after {timeout:g} s", timed_out=True)
        except OSError as exc:
            return Result(127, "", f"{argv[0]}: {exc.strerror}")
        return Result(done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        pass
