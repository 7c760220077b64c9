"""The access-control capability: login, users, tokens, the audit log and its page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from portal.hookspecs import hookimpl
from portal.lazy import LazyCommand
from portal.settings import Settings

if TYPE_CHECKING:
    import flask


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(LazyCommand("users", "portal.auth.cli:users", "People who may use the portal."))
    cli.add_command(
        LazyCommand("tokens", "portal.auth.cli:tokens", "API tokens for machines (Bearer).")
    )
    cli.add_command(
        LazyCommand("audit", "portal.auth.audit_cli:audit", "Print the audit log, oldest first.")
    )


@hookimpl
def register_blueprints(settings: Settings) -> list[flask.Blueprint]:
    from portal.auth.login import blueprint

    return [blueprint]


@hookimpl
def register_pages() -> list[Path]:
    return [Path(__file__).resolve().parent / "pages"]
