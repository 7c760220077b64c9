"""``portal ops update | rollback | recover``: fleet-wide actions with progress bars (``rich``).

They request runs as every ``portal ops`` command does (same validation, audit and worker),
fill in the hosts an operator would otherwise list by hand (every host running the component,
the hosts an update changed, the whole inventory), and follow the run with a bar per batch of
work: hosts updated, hosts restored, hosts back per recovery tier.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from portal import settings
from portal.auth.roles import requires

POLL_S = 0.3


def _request(action: str, hosts: list[str], params: dict[str, str], reason: str) -> int:
    from portal.auth.cli_access import current
    from portal.ops import runs

    return runs.request(settings.get(), current(), action, hosts, params, reason)


def _gated_hosts(final: str) -> Callable[[Any], set[str]]:
    """Hosts whose step ``final`` succeeded (what a bar counts as done)."""
    return lambda run: {s.host for s in run.steps if s.name == final and s.state == "succeeded"}


def follow(run_id: int, bars: dict[str, list[str]], done: Callable[[Any], set[str]]) -> Any:
    """Print each finished step and advance one bar per group of hosts until the run ends."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from portal.ops import runs

    cfg = settings.get()
    if runs.workers_alive(cfg) == 0:
        click.echo(
            "warning: no ops worker is running; the run waits in the queue until one starts "
            "(`portal run` or `portal ops worker`)",
            err=True,
        )
        return None
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    shown = 0
    with Progress(*columns, console=Console(highlight=False)) as progress:
        tasks = {name: progress.add_task(name, total=len(hosts)) for name, hosts in bars.items()}
        while True:
            run = runs.get(cfg, run_id)
            for step in run.steps[shown:]:
                if step.state == "running":
                    break
                detail = f"  {step.detail}" if step.detail else ""
                line = f"  [{step.seq}] {step.host or '-':14} {step.name:14} {step.state}{detail}"
                progress.console.print(escape(line), soft_wrap=True)
                shown += 1
            finished = done(run)
            for name, hosts in bars.items():
                progress.update(tasks[name], completed=sum(h in finished for h in hosts))
            if run.finished:
                return run
            time.sleep(POLL_S)


def _end(run: Any) -> None:
    """The verdict line; exit 1 unless it succeeded (nothing when no worker took it yet)."""
    from portal.ops.cli import _end as end

    if run is not None:
        end(run)


def _dry_run(action: str, hosts: list[str], params: dict[str, str], reason: str) -> None:
    from portal.ops.cli import submit

    submit(action, tuple(hosts), params, reason, dry_run=True)


# -- update --------------------------------------------------------------------------------------
@requires("operator")
@click.command("update")
@click.argument("hosts", nargs=-1)
@click.option("--component", required=True, help="The component to update (its unit label).")
@click.option("--version", "version", default="", help="Version to install; none: restart only.")
@click.option("--batch", default="1", show_default=True, help="Hosts at a time: 1, N or 25%.")
@click.option("--settle", default="30s", show_default=True, help="Quiet time in each gate.")
@click.option("--no-gate", is_flag=True, help="Skip the health gates (admin only).")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--dry-run", is_flag=True, help="Show the commands per host; run nothing.")
@click.option("--wait/--no-wait", default=True, help="Follow the run to its end.")
def update(
    hosts: tuple[str, ...],
    component: str,
    version: str,
    batch: str,
    settle: str,
    no_gate: bool,
    reason: str,
    dry_run: bool,
    wait: bool,
) -> None:
    """Roll COMPONENT to --version over HOSTS (default: every host running it), a batch at a
    time; each batch must pass the health gate before the next starts."""
    from portal.ops import rolling

    cfg = settings.get()
    chosen = list(hosts) or rolling.hosts_with(cfg, component)
    if not chosen:
        raise click.UsageError(f"no host runs component {component!r}; name the hosts")
    params = {"component": component, "version": version, "batch": batch, "settle": settle}
    if no_gate:
        params["gate"] = "no"
    if dry_run:
        _dry_run("update", chosen, params, reason)
        return
    batches = rolling.plan(chosen, batch)
    run_id = _request("update", chosen, params, reason)
    what = f"to {version}" if version else "(restart)"
    click.echo(
        f"run {run_id}: update {component} {what} on {len(chosen)} hosts, {len(batches)} batches"
    )
    if wait:
        bars = {f"batch {i}/{len(batches)}": b for i, b in enumerate(batches, start=1)}
        final = "health gate" if not no_gate else ("update" if version else "restart")
        _end(follow(run_id, bars, _gated_hosts(final)))


# -- rollback ------------------------------------------------------------------------------------
@requires("operator")
@click.command("rollback")
@click.argument("run_id", type=int)
@click.argument("hosts", nargs=-1)
@click.option("--settle", default="30s", show_default=True, help="Quiet time in each gate.")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--dry-run", is_flag=True, help="Show the commands per host; run nothing.")
@click.option("--wait/--no-wait", default=True, help="Follow the run to its end.")
def rollback(
    run_id: int, hosts: tuple[str, ...], settle: str, reason: str, dry_run: bool, wait: bool
) -> None:
    """Restore the versions HOSTS ran before update run RUN_ID (default: every host it changed)."""
    from portal.ops import rolling

    chosen = list(hosts) or rolling.rollback_hosts(settings.get(), run_id)
    params = {"run": str(run_id), "settle": settle}
    if dry_run:
        _dry_run("rollback", chosen, params, reason)
        return
    new = _request("rollback", chosen, params, reason)
    click.echo(f"run {new}: rollback of run {run_id} on {', '.join(chosen)}")
    if wait:
        _end(follow(new, {"hosts restored": chosen}, _gated_hosts("health gate")))


# -- recover -------------------------------------------------------------------------------------
def _report(run: Any) -> None:
    after = (run.result or {}).get("after") or {}
    for row in after.get("tiers") or []:
        took = "-" if row.get("seconds") is None else f"{row['seconds']:g} s"
        click.echo(f"  {row['tier']:10} {len(row['back'])}/{len(row['hosts'])} back  {took}")
        for host, why in (row.get("not_back") or {}).items():
            click.echo(f"    not back: {host}: {why}")


@requires("operator")
@click.command("recover")
@click.argument("hosts", nargs=-1)
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--dry-run", is_flag=True, help="Show the tiers and commands; run nothing.")
@click.option("--wait/--no-wait", default=True, help="Follow the run to its end.")
def recover(hosts: tuple[str, ...], reason: str, dry_run: bool, wait: bool) -> None:
    """Bring HOSTS (default: every host not retired) back after a power cut, tier by tier:
    database, storage, real-time, batch, portal. Resumes if the ops worker dies."""
    from portal.ops import recover as recovery

    cfg = settings.get()
    chosen = list(hosts) or recovery.default_hosts(cfg)
    order = recovery.plan(cfg, chosen)
    for tier, members in order:
        click.echo(f"tier {tier}: {', '.join(members)}")
    if dry_run:
        _dry_run("recover", chosen, {}, reason)
        return
    run_id = _request("recover", chosen, {}, reason)
    click.echo(f"run {run_id}: recovery of {len(chosen)} hosts in {len(order)} tiers")
    if wait:

        def back(run: Any) -> set[str]:
            return set((run.progress.get("hosts") or {}).keys())

        run = follow(run_id, {f"tier {t}": m for t, m in order}, back)
        if run is not None:
            _report(run)
        _end(run)


#: What the ``portal ops`` group adds (portal/ops/cli.py).
COMMANDS = (update, rollback, recover)
