"""The event bus capability: ``portal events publish | tail``."""

from __future__ import annotations

import click

from portal.hookspecs import hookimpl
from portal.lazy import LazyCommand


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "events",
            "portal.events.cli:events",
            "Publish and follow events (table + LISTEN/NOTIFY).",
        )
    )
