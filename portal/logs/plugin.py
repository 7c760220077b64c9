"""The logs capability: ``portal logs`` and ``GET /api/logs``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from portal.hookspecs import hookimpl
from portal.lazy import LazyCommand
from portal.settings import Settings

if TYPE_CHECKING:
    import flask


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "logs",
            "portal.logs.cli:logs",
            "Print stored log lines, oldest first: `<time> <host> <component> <LEVEL> <message>`.",
        )
    )


@hookimpl
def register_blueprints(settings: Settings) -> list[flask.Blueprint]:
    from portal.logs.api import blueprint

    return [blueprint]
