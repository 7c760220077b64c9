"""Starting, checking and stopping plain child processes by PID (no systemd)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: Children started by ``spawn`` in this process, so their exit status can be read (``exit_code``).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    cmd: Sequence[str],
    log_path: Path,
    cwd: Path | None = None,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Start ``cmd`` detached in its own session (Ctrl-C in a terminal does not reach it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
            user=user,
            env=env,
        )
    _CHILDREN[proc.pid] = proc  # kept: a dropped Popen is reaped by subprocess, status lost
    return proc.pid


def _reap(pid: int) -> None:
    """Collect an exited child of this process so it does not linger as a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        child.poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def exit_code(pid: int | None) -> int | None:
    """The exit code of a process ``spawn`` started here once it ended (-N: killed by signal N);
    None while it runs or when it is not this process's child (e.g. a daemonized PostgreSQL)."""
    child = _CHILDREN.get(pid or 0)
    return None if child is None else child.poll()


def describe_exit(code: int | None) -> str:
    """``exit code 1``, ``exit by SIGKILL`` or ``exit status unknown``."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"exit by {signal.Signals(-code).name}"
        except ValueError:
            return f"exit by signal {-code}"
    return f"exit code {code}"


def alive(pid: int | None, expect: str | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, its command line contains ``expect``."""
    if not pid:
        return False
    _reap(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        if state in (b"Z", b"X"):
            return False
        if expect:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if expect.encode() not in fh.read():
                    return False  # the pid was reused by another program
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return True


def stop(pid: int, expect: str | None = None, timeout: float = 15.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; True once the process is gone."""
    if not alive(pid, expect):
        return True
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        if wait_until(lambda: not alive(pid), wait):
            return True
    return not alive(pid)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
