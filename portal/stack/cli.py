"""``portal stack``: start, check and stop the local services (imports the manager on use)."""

from __future__ import annotations

import sys

import click

from portal import settings
from portal.auth.roles import requires


def cfg() -> settings.Settings:
    return settings.get()


@click.group()
def stack() -> None:
    """Start, check and stop the local PostgreSQL, Prometheus, Pushgateway, Alertmanager."""


@requires("operator")
@stack.command("up")
def stack_up() -> None:
    """Start every service that is not already running (idempotent)."""
    from portal.stack import manager

    statuses = manager.up(cfg(), on_progress=lambda m: click.echo(m, err=True))
    click.echo(manager.describe(statuses))


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stack_status(as_json: bool) -> None:
    """Pid, URL and health of each service; exit 1 if any is not healthy."""
    from portal.stack import manager

    statuses = manager.status(cfg())
    click.echo(manager.as_json(statuses) if as_json else manager.describe(statuses))
    if not all(s.ok for s in statuses):
        sys.exit(1)


@requires("operator")
@stack.command("down")
def stack_down() -> None:
    """Stop the services this stack started (external ones are left alone)."""
    from portal.stack import manager

    manager.down(cfg(), on_progress=lambda m: click.echo(m, err=True))
