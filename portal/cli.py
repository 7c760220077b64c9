"""The ``portal`` command: a root group whose commands all come from plugins.

Every ``PortalError`` ends as one line ``error: ...`` on stderr and its exit code (2 for bad
settings); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from portal import plugins, settings
from portal.errors import PortalError, SettingsError


class PluginGroup(click.Group):
    """The root group: plugins add their commands (``register_commands``) on first lookup."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            loaded = plugins.get(settings.get())
        except SettingsError:
            loaded = plugins.manager()  # the callback reports the bad setting
        loaded.results("register_commands", cli=self)
        for info in loaded.failed:
            click.echo(f"warning: plugin {info.name} ({info.source}): {info.error}", err=True)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="obsportal")
def cli() -> None:
    """obsportal: observability, operations and quicklooks for the pipeline cluster."""
    s = settings.get()  # validate every PORTAL_* setting before any command runs
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("httpx", "httpcore", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def _is_connection_error(exc: BaseException) -> bool:
    """A database that stopped answering mid-command is a setting problem, not a crash."""
    import psycopg
    import sqlalchemy.exc

    return isinstance(exc, psycopg.OperationalError | sqlalchemy.exc.OperationalError)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="portal", standalone_mode=False)
    except PortalError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # usage errors: Click's own one-line message, exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if "psycopg" not in sys.modules or not _is_connection_error(exc):
            raise
        from portal.db.engine import describe_unreachable
        from portal.errors import DatabaseUnavailable

        err = DatabaseUnavailable(
            describe_unreachable(settings.get().database_url, getattr(exc, "orig", None) or exc)
        )
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
