"""The alerts capability: ``portal alerts``, the Alertmanager webhook, the alert rules, the
Alerts page and the runbooks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from portal.hookspecs import hookimpl
from portal.lazy import LazyCommand
from portal.resources import shipped
from portal.settings import Settings

if TYPE_CHECKING:
    import flask


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "alerts",
            "portal.alerts.cli:alerts",
            "Alerts recorded from Alertmanager, and the Prometheus alert rules.",
        )
    )


@hookimpl
def register_blueprints(settings: Settings) -> list[flask.Blueprint]:
    from portal.alerts import web, webhook

    return [webhook.blueprint, web.blueprint]


@hookimpl
def register_pages() -> list[Path]:
    return [Path(__file__).resolve().parent / "pages"]


@hookimpl
def prometheus_rule_files() -> list[Path]:
    return [shipped("prometheus") / "rules" / "obsportal.yml"]  # other capabilities add theirs
