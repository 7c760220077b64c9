"""``portal run`` (what ``make run`` calls): the whole local stack in the foreground.

Brings the services up, migrates, then supervises the portal's own long-running components
as child processes; Ctrl-C (or SIGTERM) stops them, then the services this run started.
A component that exits is restarted with back-off, and its exit is reported.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from portal.db import migrate
from portal.db.tables import TIMESERIES
from portal.settings import Settings
from portal.stack import manager, process

PORTAL = [sys.executable, "-m", "portal.cli"]


@dataclass
class Component:
    """A long-running ``portal`` subcommand that ``portal run`` keeps alive."""

    name: str
    argv: list[str]
    demo_only: bool = False
    once: bool = False  # a one-shot job: not restarted after a clean exit
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    log: list[str] = field(default_factory=list)


def components(cfg: Settings) -> list[Component]:
    """What runs in the foreground; each capability adds its entry here."""
    return [
        Component("maintenance", [*PORTAL, "db", "maintain-loop"]),
        Component("collector", [*PORTAL, "collect", "host"]),
        Component("logshipper", [*PORTAL, "collect", "logs"]),
        # a day of history first, so graphs are not empty on the first visit (idempotent)
        Component(
            "demo-seed",
            [*PORTAL, "demo", "seed", "--days", "1", "--step", "60", "--prometheus"],
            demo_only=True,
            once=True,
        ),
        Component("demo", [*PORTAL, "demo", "run"], demo_only=True),
        Component("web", [*PORTAL, "web"]),
    ]


def _available(comp: Component) -> bool:
    """Only start subcommands whose module exists (checked without importing it)."""
    import importlib.util

    from portal.cli import COLLECTORS, LAZY_COMMANDS

    words = comp.argv[len(PORTAL) :]
    target = COLLECTORS.get(words[1]) if words[0] == "collect" else LAZY_COMMANDS.get(words[0])
    if target is None:
        return True  # a built-in command
    return importlib.util.find_spec(target.partition(":")[0]) is not None


def _log(comp: Component, cfg: Settings) -> Path:
    """Each component's output goes to ``<data_dir>/log/<name>.log``, which the shipper reads."""
    return cfg.data_dir / "log" / f"{comp.name}.log"


def _start(comp: Component, cfg: Settings) -> subprocess.Popen[bytes]:
    path = _log(comp, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as out:
        return subprocess.Popen(
            comp.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def main(cfg: Settings, demo: bool = True) -> None:
    say = lambda m: click.echo(f"[portal run] {m}", err=True)  # noqa: E731
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    # first thing: a Ctrl-C during start-up must still end in a clean stop
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    comps: list[Component] = []
    try:
        manager.up(cfg, on_progress=say)
        migrate.upgrade(cfg.database_url)
        retention = {t: getattr(cfg, f) for t, f in TIMESERIES.items()}
        migrate.maintain(cfg.database_url, retention, cfg.partition_premake_days)
        comps = [c for c in components(cfg) if (demo or not c.demo_only) and _available(c)]
        click.echo(manager.describe(manager.status(cfg)))
        say(f"portal: {cfg.web_url}  (Ctrl-C stops everything)")
        say(f"logs of every component: portal logs --host {cfg.host_name} --since 10m")
        while not stopping:
            now = time.monotonic()
            for comp in comps:
                if comp.proc is not None and comp.proc.poll() is not None:
                    if comp.once and comp.proc.returncode == 0:
                        say(f"{comp.name} done")
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
