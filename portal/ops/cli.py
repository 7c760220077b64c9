"""``portal ops``: request actions on hosts (same validation, audit and worker as the web),
follow their steps, read the history.

Every registered action (``register_ops_actions``) without a command of its own here becomes
``portal ops <action> HOST... --<param> VALUE --reason TEXT [--dry-run]``; a parameter whose
pattern is ``(|yes|no)`` becomes a flag. Acting commands need role operator (the action may
need more); ``status``, ``history``, ``show`` and ``maintenance list`` need viewer.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from portal import settings
from portal.auth.roles import requires
from portal.errors import PortalError

FLAG_PATTERN = "(|yes|no)"
POLL_S = 0.3


def _who() -> Any:
    from portal.auth.cli_access import current

    return current()


def _print_steps(run: Any, shown: int) -> int:
    for step in run.steps[shown:]:
        if step.state == "running":
            break
        mark = {"succeeded": "ok", "failed": "FAILED", "skipped": "skipped"}.get(step.state, "")
        detail = f"  {step.detail}" if step.detail else ""
        click.echo(f"  [{step.seq}] {step.host or '-':12} {step.name:16} {mark}{detail}")
        shown += 1
    return shown


def submit(
    action: str,
    hosts: tuple[str, ...],
    params: dict[str, Any],
    reason: str,
    dry_run: bool,
    wait: bool = True,
) -> None:
    """Request a run and, unless ``wait`` is off, follow it to its end; exit 1 when it fails."""
    from rich.console import Console

    from portal.ops import runs

    cfg = settings.get()
    run_id = runs.request(cfg, _who(), action, hosts, params, reason, dry_run=dry_run)
    run = runs.get(cfg, run_id)
    if dry_run:
        click.echo(f"dry run {run_id} of {action} on {', '.join(hosts) or 'no hosts'}:")
        _print_steps(run, 0)  # each command step shows the exact line it would run
        _end(run)
        return
    click.echo(f"run {run_id}: {action} on {', '.join(hosts) or 'no hosts'} queued")
    if not wait:
        return
    if runs.workers_alive(cfg) == 0:
        click.echo(
            "warning: no ops worker is running; the run waits in the queue until one starts "
            "(`portal run` or `portal ops worker`)",
            err=True,
        )
        return
    shown = 0
    console = Console(stderr=True)
    with console.status(f"run {run_id}: waiting for a worker") as status:
        while not run.finished:
            time.sleep(POLL_S)
            run = runs.get(cfg, run_id)
            shown = _print_steps(run, shown)
            current = next((s for s in run.steps if s.state == "running"), None)
            if current is not None:
                status.update(f"run {run_id}: [{current.seq}] {current.host} {current.name}")
            elif run.state == "queued":
                status.update(f"run {run_id}: queued (a host is busy with another run)")
    _print_steps(run, shown)
    _end(run)


def _end(run: Any) -> None:
    verdict = f"run {run.id} {run.state}" + (f": {run.error}" if run.error else "")
    click.echo(verdict)
    if run.state != "succeeded":
        sys.exit(1)


# -- the group -----------------------------------------------------------------------------------
class OpsGroup(click.Group):
    """The commands below, plus one generated command per registered action without one."""

    def _actions(self) -> dict[str, Any]:
        from portal.ops.runs import actions

        try:
            return actions(settings.get())
        except PortalError:
            return {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._actions()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        action = self._actions().get(cmd_name)
        return None if action is None else action_command(action)


def action_command(action: Any) -> click.Command:
    """``portal ops <action>`` for a registered action (see the module docstring)."""
    flags = [p for p, pattern in action.params.items() if pattern == FLAG_PATTERN]

    def callback(
        hosts: tuple[str, ...], reason: str, dry_run: bool, wait: bool, **values: Any
    ) -> None:
        params: dict[str, Any] = {}
        for name, value in values.items():
            key = name
            if key in flags:
                if value:
                    params[key] = "yes"
            elif value not in (None, ""):
                params[key] = value
        submit(action.name, hosts, params, reason, dry_run, wait)

    options: list[click.Parameter] = [
        click.Argument(["hosts"], nargs=-1, required=action.hosts != "any"),
        click.Option(["--reason"], required=True, help="Why (kept in the audit log)."),
        click.Option(["--dry-run"], is_flag=True, help="Show what would run; run nothing."),
        click.Option(["--wait/--no-wait"], default=True, help="Follow the run to its end."),
    ]
    for name, pattern in action.params.items():
        opt = "--" + name.replace("_", "-")
        if name in flags:
            options.append(click.Option([opt, name], is_flag=True, help=f"{name} (role rules)"))
        else:
            options.append(click.Option([opt, name], default="", help=f"must match {pattern}"))
    command = click.Command(
        action.name, callback=callback, params=options, help=action.help, short_help=action.help
    )
    return requires(action.role)(command)


@click.group(cls=OpsGroup)
def ops() -> None:
    """Operations on hosts: maintenance, drain, restart, reboot, rolling updates, recovery."""


@requires("operator")
@ops.command("worker")
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=None,
    help="Runs executed side by side (PORTAL_OPS_WORKER_THREADS).",
)
def worker_cmd(threads: int | None) -> None:
    """Run the ops worker in the foreground (`portal run` starts one)."""
    from portal.ops import worker

    worker.main(threads)


@ops.group("maintenance")
def maintenance() -> None:
    """Maintenance windows: alerts of hosts silenced until an end time."""


@requires("operator")
@maintenance.command("on")
@click.argument("hosts", nargs=-1, required=True)
@click.option("--until", "until", required=True, help="End: a duration (2h) or a time.")
@click.option("--reason", required=True, help="Why (shown with the silence, audited).")
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--wait/--no-wait", default=True, help="Follow the run to its end.")
def maintenance_on(
    hosts: tuple[str, ...], until: str, reason: str, dry_run: bool, wait: bool
) -> None:
    """Put hosts into maintenance until a time: their alerts are silenced meanwhile."""
    submit("maintenance", hosts, {"mode": "on", "until": until}, reason, dry_run, wait)


@requires("operator")
@maintenance.command("off")
@click.argument("hosts", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why (audited).")
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--wait/--no-wait", default=True, help="Follow the run to its end.")
def maintenance_off(hosts: tuple[str, ...], reason: str, dry_run: bool, wait: bool) -> None:
    """End hosts' maintenance now: silences expired, their previous state restored."""
    submit("maintenance", hosts, {"mode": "off"}, reason, dry_run, wait)


@requires("viewer")
@maintenance.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def maintenance_list(as_json: bool) -> None:
    """Open maintenance windows: host, until, who, why."""
    from portal.ops import maintenance as windows
    from portal.timeparse import stamp

    found = windows.open_windows(settings.get())
    for w in found:
        if as_json:
            click.echo(json.dumps(w.as_dict()))
        else:
            click.echo(f"{w.host:14} until {stamp(w.ends_at)}  by {w.actor}  {w.reason}")
    if not found and not as_json:
        click.echo("no host is in maintenance")


@requires("viewer")
@ops.command("status")
@click.option("--json", "as_json", is_flag=True, help="The whole report as JSON.")
def status_cmd(as_json: bool) -> None:
    """Hosts with their maintenance, drain and lock; whether a worker runs; active runs."""
    from portal.ops import status

    report = status.report(settings.get())
    if as_json:
        click.echo(json.dumps(report, default=str))
        return
    click.echo(f"ops workers running: {report['workers']}")
    for h in report["hosts"]:
        notes = []
        if h["maintenance"]:
            m = h["maintenance"]
            notes.append(f"maintenance until {m['until']} by {m['by']} ({m['why']})")
        if h["drained"]:
            notes.append(f"drained by {h['drained']['by']} ({h['drained']['why']})")
        if h["locked_by_run"]:
            notes.append(f"busy: run {h['locked_by_run']}")
        click.echo(f"{h['host']:14} {h['role']:10} {h['state']:12} {'; '.join(notes)}")
    for r in report["active_runs"]:
        click.echo(f"run {r['id']}: {r['action']} on {','.join(r['hosts'])} {r['state']}")


@requires("viewer")
@ops.command("history")
@click.option("--host", default="", help="Only runs on this host.")
@click.option("--action", default="", help="Only this action.")
@click.option("--limit", type=click.IntRange(1, 1000), default=30)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def history_cmd(host: str, action: str, limit: int, as_json: bool) -> None:
    """Action runs, newest first: when, who, what, on which hosts, why, how it ended."""
    from portal.ops import runs
    from portal.timeparse import stamp

    found = runs.history(settings.get(), limit, host or None, action or None)
    for r in found:
        if as_json:
            click.echo(json.dumps(r.as_dict(), default=str))
            continue
        params = " ".join(f"{k}={v}" for k, v in sorted(r.params.items()))
        dry = " (dry run)" if r.dry_run else ""
        click.echo(
            f"{r.id:5} {stamp(r.created_at)} {r.actor:18} {r.action}{dry} "
            f"{','.join(r.hosts) or '-'} {params} [{r.state}] reason: {r.reason}"
            + (f" error: {r.error}" if r.error else "")
        )
    if not found and not as_json:
        click.echo("no runs")


@requires("viewer")
@ops.command("show")
@click.argument("run_id", type=int)
def show_cmd(run_id: int) -> None:
    """One run and its steps."""
    from portal.ops import runs

    run = runs.get(settings.get(), run_id)
    click.echo(
        f"run {run.id}: {run.action} on {','.join(run.hosts) or '-'} by {run.actor} "
        f"[{run.state}] reason: {run.reason}" + (f" error: {run.error}" if run.error else "")
    )
    _print_steps(run, 0)


@requires("operator")
@ops.command("cancel")
@click.argument("run_id", type=int)
@click.option("--reason", default="", help="Why (audited).")
def cancel_cmd(run_id: int, reason: str) -> None:
    """Cancel a queued run, or stop a running one before its next step."""
    from portal.ops import runs

    state = runs.cancel(settings.get(), _who(), run_id, reason)
    click.echo(f"run {run_id}: {'cancelled' if state == 'cancelled' else 'asked to stop'}")


# update, rollback, recover: portal/ops/cli_fleet.py
from portal.ops.cli_fleet import COMMANDS as FLEET_COMMANDS  # noqa: E402

for _command in FLEET_COMMANDS:
    ops.add_command(_command)
