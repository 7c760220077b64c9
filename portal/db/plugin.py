"""The database capability: ``portal db`` and the hourly partition maintenance component."""

from __future__ import annotations

import click

from portal.hookspecs import Component, hookimpl, portal_argv
from portal.lazy import LazyCommand
from portal.settings import Settings


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand("db", "portal.db.cli:db", "Schema migrations and partition maintenance.")
    )


@hookimpl
def register_components(settings: Settings) -> list[Component]:
    return [Component("maintenance", portal_argv("db", "maintain-loop"), order=10)]
