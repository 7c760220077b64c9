"""The data capability: ``portal data``, ``/api/products``, the Data and Transfers pages, the
rule evaluator and transfer worker components, and the data alert rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from portal.hookspecs import Component, ProductKind, hookimpl, portal_argv
from portal.lazy import LazyCommand
from portal.resources import shipped
from portal.settings import Setting, Settings

if TYPE_CHECKING:
    import flask


@hookimpl
def register_settings() -> list[Setting]:
    from portal.data.settings import SETTINGS

    return list(SETTINGS)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "data",
            "portal.data.cli:data",
            "Data products: register, find, replicate, delete safely, account for storage.",
        )
    )


@hookimpl
def register_blueprints(settings: Settings) -> list[flask.Blueprint]:
    from portal.data import api

    return [api.blueprint]


@hookimpl
def register_pages() -> list[Path]:
    pages = Path(__file__).resolve().parent / "pages"
    return [pages] if pages.is_dir() else []


@hookimpl
def register_components(settings: Settings) -> list[Component]:
    return [
        Component("data-evaluator", portal_argv("data", "evaluate"), order=56),
        Component("data-worker", portal_argv("data", "worker"), order=57),
        Component("data-demo", portal_argv("data", "demo"), demo_only=True, order=58),
    ]


@hookimpl
def prometheus_rule_files() -> list[Path]:
    return [shipped("prometheus") / "rules" / "data.yml"]


@hookimpl
def register_product_kinds() -> list[ProductKind]:
    from portal.data.kinds import BUILTIN

    return list(BUILTIN)
