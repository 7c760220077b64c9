"""The portal's own commands, registered like any plugin's: ``settings``, ``plugins``, ``run``."""

from __future__ import annotations

import click

from portal import plugins, settings
from portal.auth.roles import requires
from portal.hookspecs import hookimpl


@click.group("settings")
def settings_group() -> None:
    """Show the effective configuration."""


@settings_group.command("show")
def settings_show() -> None:
    """Print every setting (core and plugins') with its effective value; passwords hidden."""
    from portal.redact import redact_url

    cfg = settings.get()
    for spec in settings.all_specs(cfg):
        value = cfg.extra[spec.env] if spec.env in cfg.extra else getattr(cfg, spec.field)
        if isinstance(value, tuple):
            value = ":".join(map(str, value))
        text = "" if value is None else str(value)
        click.echo(f"{spec.env}={redact_url(text) if spec.env.endswith('_URL') else text}")


@settings_group.command("table")
def settings_table() -> None:
    """Print the Markdown settings table (core settings, then plugins')."""
    click.echo(settings.markdown_table(settings.all_specs(settings.get())))


@click.command("plugins")
@click.option("--hooks/--no-hooks", default=True, help="Show the hooks each plugin implements.")
def plugins_cmd(hooks: bool) -> None:
    """List loaded plugins: name, where they come from, their hooks or load error."""
    loaded = plugins.get(settings.get())
    infos = (
        loaded.infos
        if hooks
        else [i.__class__(i.name, i.source, i.module, (), i.error) for i in loaded.infos]
    )
    click.echo(plugins.describe(infos))


@requires("admin")
@click.command("run")
@click.option("--no-demo", is_flag=True, help="Do not start the pipeline simulator.")
def run_cmd(no_demo: bool) -> None:
    """Everything `make run` does: stack up, db upgrade, then the components in the foreground."""
    from portal import run

    run.main(settings.get(), demo=not no_demo)


@hookimpl
def register_commands(cli: click.Group) -> None:
    for command in (settings_group, plugins_cmd, run_cmd):
        cli.add_command(command)
