"""The portal web capability: ``portal web``, ``portal quicklook``, the built-in pages and
quicklooks, the portal's own API, and the web component of ``portal run``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from portal.hookspecs import Component, hookimpl, portal_argv
from portal.lazy import LazyCommand
from portal.resources import shipped
from portal.settings import Setting, Settings

if TYPE_CHECKING:
    import flask


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "web",
            "portal.web.cli:web",
            "Serve the portal under gunicorn (PORTAL_WEB_BIND, PORTAL_WEB_WORKERS).",
        )
    )
    cli.add_command(
        LazyCommand(
            "quicklook",
            "portal.web.cli:quicklook",
            "Quicklook plugins: one Python file = one page.",
        )
    )


@hookimpl
def register_settings() -> list[Setting]:
    from portal import heavy

    return [heavy.SETTING]


@hookimpl
def register_blueprints(settings: Settings) -> list[flask.Blueprint]:
    from portal.web import openapi
    from portal.web.api import blueprint

    return [blueprint, openapi.blueprint]


@hookimpl
def register_pages() -> list[Path]:
    return [Path(__file__).resolve().parent / "pages"]


@hookimpl
def quicklook_folders(settings: Settings) -> list[Path]:
    return [shipped("quicklooks"), *settings.quicklooks_path]


@hookimpl
def register_components(settings: Settings) -> list[Component]:
    return [Component("web", portal_argv("web"), order=60)]
