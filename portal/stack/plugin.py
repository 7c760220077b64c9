"""The local stack capability: the ``portal stack`` commands."""

from __future__ import annotations

import click

from portal.hookspecs import hookimpl
from portal.lazy import LazyCommand


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "stack",
            "portal.stack.cli:stack",
            "Start, check and stop the local PostgreSQL, Prometheus, Pushgateway, Alertmanager.",
        )
    )
