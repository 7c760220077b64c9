"""``portal run`` (what ``make run`` calls): the whole local stack in the foreground.

Brings the services up, migrates, then supervises the portal's own long-running components
as child processes; Ctrl-C (or SIGTERM) stops them, then the services this run started.
Components come from plugins (``register_components``). One that exits is restarted with
back-off (unless its restart policy says otherwise), and its exit is reported.

A port a component needs (``PORTAL_WEB_BIND``, ``PORTAL_COLLECTOR_PORT``) that is taken ends the
run at once with one line, before anything starts. A backing service this stack started
(PostgreSQL, Prometheus, Pushgateway, Alertmanager) that dies is reported on the terminal,
published as a ``stack.crashed`` event and started again by the stack manager, with back-off.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import psycopg

from portal import plugins
from portal.auth import bootstrap
from portal.db import migrate
from portal.db.tables import TIMESERIES
from portal.errors import PortalError
from portal.hookspecs import Component
from portal.settings import Settings, check_port_free
from portal.stack import manager, process

CRASH_CHECK_S = 1.0  # how often the backing services' processes are checked
STABLE_S = 600.0  # a service up this long after a restart starts its back-off afresh


@dataclass
class Running:
    """A component and the state of its process under ``portal run``."""

    spec: Component
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0

    @property
    def name(self) -> str:
        return self.spec.name


def components(cfg: Settings, demo: bool = True) -> list[Component]:
    """Every plugin's components (``register_components``) in start order; names are unique."""
    found: dict[str, Component] = {}
    for comp in plugins.get(cfg).results("register_components", settings=cfg):
        if comp.name in found:
            raise PortalError(f"two plugins register a component named {comp.name!r}")
        if demo or not comp.demo_only:
            found[comp.name] = comp
    return sorted(found.values(), key=lambda c: (c.order, c.name))


def finished(spec: Component, code: int) -> bool:
    """True when a component that exited with ``code`` is done rather than to be restarted."""
    return spec.restart == "never" or (spec.restart == "on-failure" and code == 0)


def _log(comp: Running, cfg: Settings) -> Path:
    """Each component's output goes to ``<data_dir>/log/<name>.log``, which the shipper reads."""
    return cfg.data_dir / "log" / f"{comp.name}.log"


def _start(comp: Running, cfg: Settings) -> subprocess.Popen[bytes]:
    path = _log(comp, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as out:
        return subprocess.Popen(
            comp.spec.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def check_ports(cfg: Settings, specs: list[Component]) -> None:
    """``SettingsError`` naming the setting when a port a component listens on is taken."""
    names = {c.name for c in specs}
    if "web" in names:
        check_port_free("PORTAL_WEB_BIND", cfg.web_bind.rpartition(":")[0], cfg.web_port)
    if "collector" in names:  # `portal collect host` listens on all addresses
        check_port_free("PORTAL_COLLECTOR_PORT", "0.0.0.0", cfg.collector_port)


def backoff(crashes: int) -> float:
    """Seconds before the n-th restart in a row: 1, 2, 4, ... at most 30."""
    return min(30.0, 2.0 ** min(max(crashes, 1) - 1, 5))


class StackWatch:
    """Notices backing services that died, reports them and restarts them through the manager."""

    def __init__(self, cfg: Settings, say: Callable[[str], None]) -> None:
        self.cfg, self.say = cfg, say
        self.crashes: dict[str, int] = {}
        self.due: dict[str, float] = {}  # service -> when to restart it
        self.restarted_at: dict[str, float] = {}
        self.unsent: list[dict[str, Any]] = []  # events waiting for the database
        self.next_check = 0.0

    def tick(self, now: float) -> None:
        if now < self.next_check:
            return
        self.next_check = now + CRASH_CHECK_S
        for crash in manager.crashed(self.cfg):
            if crash.name in self.due:
                continue
            if now - self.restarted_at.get(crash.name, -STABLE_S) >= STABLE_S:
                self.crashes[crash.name] = 0
            self.crashes[crash.name] = n = self.crashes.get(crash.name, 0) + 1
            delay = backoff(n)
            self.due[crash.name] = now + delay
            last = crash.last or "its log is empty"
            self.say(f"{crash.name} crashed ({crash.how}): {last}; restarting in {delay:g}s")
            self.unsent.append(
                {
                    "service": crash.name,
                    "pid": crash.pid,
                    "exit": crash.how,
                    "last_log_line": last,
                    "crashes_in_a_row": n,
                    "restart_in_s": delay,
                }
            )
        for name, due in sorted(self.due.items()):
            if time.monotonic() < due:
                continue
            try:
                manager.restart(self.cfg, name, on_progress=self.say)
            except PortalError as exc:
                self.crashes[name] += 1
                delay = backoff(self.crashes[name])
                self.due[name] = time.monotonic() + delay
                self.say(f"{name} did not start again: {exc}; retrying in {delay:g}s")
                continue
            del self.due[name]
            self.restarted_at[name] = time.monotonic()
        self.publish()

    def publish(self) -> None:
        """Send the crash events; while the database is away (maybe the crashed one) keep them."""
        from portal.events import bus

        while self.unsent:
            try:
                bus.publish(self.cfg.database_url, "stack.crashed", self.unsent[0], "portal run")
            except (PortalError, psycopg.Error):
                return
            self.unsent.pop(0)


def main(cfg: Settings, demo: bool = True) -> None:
    say = lambda m: click.echo(f"[portal run] {m}", err=True)  # noqa: E731
    stopping = False
    specs = components(cfg, demo)
    check_ports(cfg, specs)  # before anything starts: a taken port is one line, not a loop

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    # first thing: a Ctrl-C during start-up must still end in a clean stop
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    comps: list[Running] = []
    try:
        manager.up(cfg, on_progress=say)
        migrate.upgrade(cfg.database_url)
        retention = {t: getattr(cfg, f) for t, f in TIMESERIES.items()}
        migrate.maintain(cfg.database_url, retention, cfg.partition_premake_days)
        bootstrap.register_alertmanager_token(cfg)
        password = bootstrap.ensure_admin(cfg)
        comps = [Running(c) for c in specs]
        watch = StackWatch(cfg, say)
        click.echo(manager.describe(manager.status(cfg)))
        say(f"portal: {cfg.web_url}  (Ctrl-C stops everything)")
        if password is not None:
            say(
                f"created user admin with password {password}  (shown once; also in "
                f"{cfg.data_dir / 'admin-password'}, mode 0600)"
            )
        elif (cfg.data_dir / "admin-password").exists():
            say(f"log in as admin with the password in {cfg.data_dir / 'admin-password'}")
        if cfg.anonymous == "viewer":
            say("anonymous visitors may read (PORTAL_ANONYMOUS=viewer; none requires login)")
        say(f"logs of every component: portal logs --host {cfg.host_name} --since 10m")
        while not stopping:
            now = time.monotonic()
            watch.tick(now)
            for comp in comps:
                if comp.proc is not None and comp.proc.poll() is not None:
                    code = comp.proc.returncode
                    if finished(comp.spec, code):
                        say(f"{comp.name} done (exit code {code})")
                        comps.remove(comp)
                        break
                    say(f"{comp.name} exited with code {comp.proc.returncode}; restarting")
                    comp.proc = None
                    comp.restarts += 1
                    comp.next_start = now + min(30.0, 2.0 ** min(comp.restarts, 5))
                if comp.proc is None and now >= comp.next_start:
                    comp.proc = _start(comp, cfg)
                    say(f"{comp.name} started (pid {comp.proc.pid}, log {_log(comp, cfg)})")
            time.sleep(0.2)
    finally:
        say("stopping")
        for comp in comps:
            if comp.proc is not None:
                process.stop(comp.proc.pid, timeout=10)
                comp.proc.wait()
        manager.down(cfg, on_progress=say)
