"""The pipeline simulator: ``portal demo`` and, in ``portal run``, a seeded day plus live data."""

from __future__ import annotations

import click

from portal.hookspecs import Component, hookimpl, portal_argv
from portal.lazy import LazyCommand
from portal.settings import Settings


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "demo",
            "portal.demo.cli:demo",
            "The pipeline simulator: live telemetry (`run`), history (`seed`), rehearsals "
            "(`fault`, `incident`).",
        )
    )


@hookimpl
def register_components(settings: Settings) -> list[Component]:
    return [
        # a day of history first, so graphs are not empty on the first visit (idempotent)
        Component(
            "demo-seed",
            portal_argv("demo", "seed", "--days", "1", "--step", "60", "--prometheus"),
            restart="on-failure",
            demo_only=True,
            order=40,
        ),
        Component("demo", portal_argv("demo", "run"), demo_only=True, order=50),
    ]
