"""The inventory capability: ``portal hosts``."""

from __future__ import annotations

import click

from portal.hookspecs import hookimpl
from portal.lazy import LazyCommand


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "hosts",
            "portal.inventory.cli:hosts",
            "Hosts and components of the cluster; Prometheus scrapes what is listed here.",
        )
    )
