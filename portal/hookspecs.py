"""The extension points of obsportal: every capability, built-in or not, registers through these.

Built-in capabilities are plugins like a station's own package (entry-point group ``obsportal``),
so this path runs every day. Hook implementations import their heavy modules inside the hook
function: the CLI calls ``register_commands`` on every start and must stay fast.
"""

# mypy: disable-error-code="empty-body"
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    import flask

    from portal.settings import Setting, Settings

PROJECT = "obsportal"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


def portal_argv(*args: str) -> tuple[str, ...]:
    """The command line of a ``portal`` subcommand, run with this interpreter."""
    return (sys.executable, "-m", "portal", *args)


@dataclass(frozen=True)
class Component:
    """A long-running process ``portal run`` keeps alive.

    Give ``argv`` (e.g. ``portal_argv("collect", "host")``) or ``call``, a ``"module:function"``
    run in a fresh Python. ``restart``: ``always``, ``on-failure`` (a one-shot job, done after a
    clean exit) or ``never``.
    """

    name: str
    argv: tuple[str, ...] = ()
    call: str = ""
    restart: str = "always"
    demo_only: bool = False
    order: int = 100  # start order: lower first

    def command(self) -> list[str]:
        if self.argv:
            return list(self.argv)
        module, _, function = self.call.partition(":")
        if not module or not function:
            raise ValueError(f"component {self.name}: give argv or call='module:function'")
        return [sys.executable, "-c", f"import {module} as m; m.{function}()"]


@dataclass(frozen=True)
class Dashboard:
    """A Grafana dashboard: ``build()`` returns its JSON model (a dict, as Grafana stores it)."""

    name: str  # file stem under grafana-provisioning/dashboards/
    build: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class OpsAction:
    """An operations action (maintenance, restart, ...), run by the ops worker (docs/operations.md).

    ``run`` is a ``"module:function"`` called as ``function(ctx)`` with a
    ``portal.ops.context.RunContext``; it acts through ``ctx.command`` and ``ctx.step`` and
    returns a dict for the run's result (``before``/``after``); ``ActionFailed`` fails the run.
    ``check`` (optional, same form) is called as ``check(request)`` with a
    ``portal.ops.runs.Request`` before the run is queued, to refuse it early with one line.
    """

    name: str
    help: str
    role: str = "operator"
    params: dict[str, str] = field(default_factory=dict)  # name -> pattern the value must match
    run: str = ""
    check: str = ""
    hosts: str = "some"  # how many hosts a run takes: "one", "some" (1 or more), "any" (0 too)
    dangerous: bool = False  # the web page shows the dry run and asks before starting
    resumable: bool = False  # when its worker dies, queued again (it reads ctx.progress)


@dataclass(frozen=True)
class ProductKind:
    """A kind of data product the catalog accepts (built-ins: L1 chunk, RFI mask, Hhat stacks)."""

    name: str
    help: str
    retention: str = "standard"  # retention class: how long and where copies are kept


@dataclass(frozen=True)
class WorkKind:
    """A kind of batch work the scheduler submits from its backlog (e.g. Hhat stacks to build).

    ``command`` is the shell command of one job, ``{key}`` replaced by the work item's key
    (shell-quoted); empty: a stand-in that sleeps ``PORTAL_SCHED_STANDIN_SECONDS``, until the
    plugin that does the work registers the kind with its real command.
    """

    name: str
    help: str
    priority: int = 0  # higher first; age breaks ties
    max_pending_minutes: float = 120  # stuck-work limits, reported with the orchestrator's reason
    max_running_minutes: float = 120
    command: str = ""
    cores: int = 1  # what one job asks of the orchestrator
    memory_mb: int = 256
    max_attempts: int = 3  # submissions before the work item is given up as failed
    pointing_days: float = 0.0  # sky coverage one item stands for (the backlog forecast's unit)


@hookspec
def register_settings() -> list[Setting]:
    """``PORTAL_*`` settings this plugin reads (validated with the core ones, shown in tables)."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands or groups to the ``portal`` command (``cli.add_command``)."""


@hookspec
def register_blueprints(settings: Settings) -> list[flask.Blueprint]:
    """Flask blueprints (API routes) mounted on the portal's server."""


@hookspec
def register_pages() -> list[Path]:
    """Page files, or folders of them, shown in the portal's main navigation."""


@hookspec
def quicklook_folders(settings: Settings) -> list[Path]:
    """Folders of one-file quicklook pages; the running portal watches them for changes."""


@hookspec
def register_components(settings: Settings) -> list[Component]:
    """Long-running components ``portal run`` starts, supervises and stops."""


@hookspec
def register_dashboards() -> list[Dashboard]:
    """Grafana dashboards written by ``portal grafana build`` and checked by ``grafana check``."""


@hookspec
def prometheus_rule_files() -> list[Path]:
    """Prometheus alerting/recording rule files the local Prometheus loads and promtool checks."""


@hookspec
def register_ops_actions() -> list[OpsAction]:
    """Operations actions offered in the portal and by ``portal ops``."""


@hookspec
def register_product_kinds() -> list[ProductKind]:
    """Kinds of data products the catalog accepts, beyond the built-in ones."""


@hookspec
def register_work_kinds() -> list[WorkKind]:
    """Kinds of batch work the scheduler takes from its backlog."""


@hookspec
def batch_work_on_host(settings: Settings, host: str) -> list[str]:
    """Batch jobs running on ``host`` now, one line each (a drain waits for them, a reboot
    refuses while any run); raise ``PortalError`` when the batch system cannot tell."""
