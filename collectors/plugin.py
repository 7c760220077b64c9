"""The collectors: ``portal collect host | logs``, and both running under ``portal run``."""

from __future__ import annotations

import click

from portal.hookspecs import Component, hookimpl, portal_argv
from portal.lazy import LazyCommand
from portal.settings import Settings


@click.group("collect")
def collect() -> None:
    """Collectors: host telemetry, log shipping."""


collect.add_command(
    LazyCommand(
        "host",
        "collectors.host:command",
        "Sample this host (CPU, memory, disks, network, components) for Prometheus and the DB.",
    )
)
collect.add_command(
    LazyCommand(
        "logs",
        "collectors.logship:command",
        "Tail log files into the log store (and Loki when PORTAL_LOKI_URL is set).",
    )
)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(collect)


@hookimpl
def register_components(settings: Settings) -> list[Component]:
    return [
        Component("collector", portal_argv("collect", "host"), order=20),
        Component("logshipper", portal_argv("collect", "logs"), order=30),
    ]
