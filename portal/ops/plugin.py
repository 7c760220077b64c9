"""The ops capability's hook implementations: settings, `portal ops`, `/api/ops`, the ops
worker, and the built-in actions (other modules' actions register the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from portal.hookspecs import Component, OpsAction, hookimpl, portal_argv
from portal.lazy import LazyCommand
from portal.settings import (
    Setting,
    Settings,
    _choice,
    _flag,
    _float,
    _int,
    _optional_path,
    _text,
)

if TYPE_CHECKING:
    import flask

HOST_LIST = r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}"
FORCE = r"(|yes|no)"
UNTIL = r"(|[0-9A-Za-z:+.\- ]{1,40})"  # a time or duration, parsed by portal.timeparse
WAIT = r"(|[0-9]{1,5}(s|m|h))"  # how long a drain waits for running batch jobs


@hookimpl
def register_settings() -> list[Setting]:
    return [
        Setting(
            "PORTAL_OPS_SSH_KEY",
            "",
            _optional_path,
            "Private key the ops worker logs in to hosts with; empty: the user's default keys.",
        ),
        Setting(
            "PORTAL_OPS_KNOWN_HOSTS",
            "~/.ssh/known_hosts",
            _optional_path,
            "Host keys the ops worker trusts; a host whose key is not there is refused.",
        ),
        Setting(
            "PORTAL_OPS_SSH_USER", "", _text, "SSH login of the ops worker; empty: its OS user."
        ),
        Setting(
            "PORTAL_OPS_COMMANDS",
            "",
            _optional_path,
            "YAML file of site command templates (verb: command, or verb: {command, role, "
            "where}); empty: the built-in ones (docs/operations.md).",
        ),
        Setting(
            "PORTAL_OPS_EXECUTOR",
            "ssh",
            _choice("ssh", "dry-run"),
            "How the ops worker acts on hosts: `ssh`, or `dry-run` (records commands only).",
        ),
        Setting(
            "PORTAL_OPS_COMMAND_TIMEOUT",
            "60",
            _float(0.1, 86400),
            "Longest one command on a host may run (seconds) before the step fails.",
        ),
        Setting(
            "PORTAL_OPS_CONNECT_TIMEOUT",
            "10",
            _float(0.1, 600),
            "Longest an SSH connection to a host may take to open (seconds).",
        ),
        Setting(
            "PORTAL_OPS_GATE_SECONDS",
            "120",
            _float(1, 86400),
            "Health gate deadline: how long a restarted component or rebooted host may take to "
            "come back (seconds).",
        ),
        Setting(
            "PORTAL_OPS_DESIRED_STATE",
            "false",
            _flag,
            "Restart components found down while desired running (with back-off, audited).",
        ),
        Setting(
            "PORTAL_OPS_WORKER_THREADS",
            "4",
            _int(1, 64),
            "Runs the ops worker executes side by side (never two on one host).",
        ),
    ]


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "ops",
            "portal.ops.cli:ops",
            "Operations on hosts: maintenance, drain, restart, reboot, rolling updates, recovery.",
        )
    )


@hookimpl
def register_blueprints(settings: Settings) -> list[flask.Blueprint]:
    from portal.ops.api import blueprint

    return [blueprint]


@hookimpl
def register_components(settings: Settings) -> list[Component]:
    return [Component("ops-worker", portal_argv("ops", "worker"), order=55)]


@hookimpl
def register_pages() -> list[Path]:
    return [Path(__file__).resolve().parent / "pages"]  # the Operations page (ops-fleet)


@hookimpl
def register_ops_actions() -> list[OpsAction]:
    return [
        OpsAction(
            "maintenance",
            "Put hosts into maintenance until a time (their alerts silenced), or end it.",
            params={"mode": "(on|off)", "until": UNTIL},
            run="portal.ops.maintenance:run",
            check="portal.ops.maintenance:check",
        ),
        OpsAction(
            "drain",
            "No new batch work on hosts (with batch_wait: until running jobs finish); refuses "
            "real-time hosts unless an admin forces it.",
            params={"force": FORCE, "batch_wait": WAIT},
            run="portal.ops.drain:run_drain",
            check="portal.ops.drain:check_drain",
            dangerous=True,
        ),
        OpsAction(
            "undrain",
            "Let hosts take batch work again.",
            run="portal.ops.drain:run_undrain",
        ),
        OpsAction(
            "restart",
            "Restart a component on hosts, then wait until its liveness says it is back.",
            params={"component": r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"},
            run="portal.ops.restart:run",
            check="portal.ops.restart:check",
            dangerous=True,
        ),
        OpsAction(
            "reboot",
            "Reboot a host in maintenance or drained, then wait for SSH and its collector.",
            params={"force": FORCE},
            run="portal.ops.reboot:run",
            check="portal.ops.reboot:check",
            hosts="one",
            dangerous=True,
        ),
        *_fleet_actions(),
    ]


VERSION = r"(|[A-Za-z0-9][A-Za-z0-9._+~:-]{0,127})"  # empty: a rolling restart
BATCH = r"(|[1-9][0-9]{0,3}%?)"  # 1, N hosts, or a percentage of them
SETTLE = r"(|[0-9]{1,5}(\.[0-9]{1,3})?(s|m|h))"
RUN_ID = r"[1-9][0-9]{0,17}"


def _fleet_actions() -> list[OpsAction]:
    """Rolling update, its rollback, power-outage recovery (portal/ops/rolling.py, recover.py)."""
    return [
        OpsAction(
            "update",
            "Update a component to a version on hosts, a batch at a time, each batch gated by "
            "health; stops at the first failure (no version: a rolling restart).",
            params={
                "component": r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}",
                "version": VERSION,
                "batch": BATCH,
                "settle": SETTLE,
                "gate": FORCE,
            },
            run="portal.ops.rolling:run_update",
            check="portal.ops.rolling:check_update",
            dangerous=True,
        ),
        OpsAction(
            "rollback",
            "Restore the versions hosts ran before an update run.",
            params={"run": RUN_ID, "settle": SETTLE},
            run="portal.ops.rolling:run_rollback",
            check="portal.ops.rolling:check_rollback",
            dangerous=True,
        ),
        OpsAction(
            "recover",
            "Bring the cluster back after a power cut, tier by tier: database, storage, "
            "real-time, batch, portal (wake, start, check health); resumable.",
            run="portal.ops.recover:run",
            check="portal.ops.recover:check",
            hosts="any",
            dangerous=True,
            resumable=True,
        ),
    ]
