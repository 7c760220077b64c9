"""The ``portal`` command: one group per capability, each delegating to its package.

Every ``PortalError`` ends as one line ``error: ...`` on stderr and its exit code (2 for bad
settings); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from portal import settings
from portal.errors import PortalError


def cfg() -> settings.Settings:
    return settings.get()


#: Commands that live in their capability package, imported only when used: "name" -> "module:attr".
#: A capability adds its command here; the group lists only those whose module exists.
LAZY_COMMANDS: dict[str, str] = {
    "hosts": "portal.inventory.cli:hosts",
    "demo": "portal.demo.cli:demo",
    "web": "portal.web.cli:web",
    "quicklook": "portal.web.cli:quicklook",
    "logs": "portal.logs.cli:logs",
    "grafana": "portal.grafana.cli:grafana",
    "alerts": "portal.alerts.cli:alerts",
}
#: Subcommands of ``portal collect``: each collector is its own module.
COLLECTORS: dict[str, str] = {
    "host": "collectors.host:command",
    "logs": "collectors.logship:command",
}


class LazyGroup(click.Group):
    """A group whose extra subcommands are imported on first use (fast start, loose coupling)."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def _load(self, name: str) -> click.Command | None:
        import importlib
        import importlib.util

        module, _, attr = self.lazy[name].partition(":")
        if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None:
            return None
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise
        cmd: click.Command = getattr(mod, attr)
        return cmd

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(n for n in self.lazy if self._load(n) is not None)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(package_name="obsportal")
def cli() -> None:
    """obsportal: observability, operations and quicklooks for the pipeline cluster."""
    s = cfg()  # validate every PORTAL_* setting before any command runs
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("httpx", "httpcore", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


@cli.group(cls=LazyGroup, lazy=COLLECTORS)
def collect() -> None:
    """Collectors: host telemetry, log shipping."""


# -- settings ---------------------------------------------------------------------------------
@cli.group("settings")
def settings_group() -> None:
    """Show the effective configuration."""


@settings_group.command("show")
def settings_show() -> None:
    """Print every setting with its effective value."""
    s = cfg()
    for spec in settings.SPECS:
        value = getattr(s, spec.field)
        if isinstance(value, tuple):
            value = ":".join(map(str, value))
        click.echo(f"{spec.env}={value}")


@settings_group.command("table")
@click.option("--write", is_flag=True, help="Update the table in README.md in place.")
def settings_table(write: bool) -> None:
    """Print the Markdown settings table used in README.md."""
    if write:
        from portal import readme

        click.echo("README.md updated" if readme.update() else "README.md already current")
        return
    click.echo(settings.markdown_table())


# -- stack ------------------------------------------------------------------------------------
@cli.group()
def stack() -> None:
    """Start, check and stop the local PostgreSQL, Prometheus, Pushgateway, Alertmanager."""


@stack.command("up")
def stack_up() -> None:
    """Start every service that is not already running (idempotent)."""
    from portal.stack import manager

    statuses = manager.up(cfg(), on_progress=lambda m: click.echo(m, err=True))
    click.echo(manager.describe(statuses))


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stack_status(as_json: bool) -> None:
    """Pid, URL and health of each service; exit 1 if any is not healthy."""
    from portal.stack import manager

    statuses = manager.status(cfg())
    click.echo(manager.as_json(statuses) if as_json else manager.describe(statuses))
    if not all(s.ok for s in statuses):
        sys.exit(1)


@stack.command("down")
def stack_down() -> None:
    """Stop the services this stack started (external ones are left alone)."""
    from portal.stack import manager

    manager.down(cfg(), on_progress=lambda m: click.echo(m, err=True))


# -- db ---------------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """Schema migrations and partition maintenance."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Create the database if needed and migrate it to REVISION (default: head)."""
    from portal.db import migrate

    migrate.upgrade(cfg().database_url, revision)
    st = migrate.status(cfg().database_url)
    click.echo(f"database at revision {st.current} (partitioning: {st.backend})")


@db.command("downgrade")
@click.argument("revision", default="base")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def db_downgrade(revision: str, yes: bool) -> None:
    """Migrate down to REVISION (default: base, which drops every table)."""
    from portal.db import migrate

    if not yes:
        click.confirm(
            f"Downgrade the database to {revision}? Data in dropped tables is lost", abort=True
        )
    migrate.downgrade(cfg().database_url, revision)
    click.echo(f"database at revision {migrate.status(cfg().database_url).current}")


@db.command("status")
def db_status() -> None:
    """Current and head revision, partitioning engine, partitions per table."""
    from portal.db import migrate

    st = migrate.status(cfg().database_url)
    click.echo(f"revision: {st.current or 'none (run: portal db upgrade)'}  head: {st.head}")
    click.echo(f"partitioning: {st.backend}")
    for table, parts in st.partitions.items():
        days = [p.rsplit("_p", 1)[1] for p in parts if "_p" in p and p[-1].isdigit()]
        span = f"{days[0]} .. {days[-1]}" if days else "-"
        click.echo(f"  {table:15} {len(parts):4} partitions  {span}")
    if not st.up_to_date:
        sys.exit(1)


@db.command("maintain")
def db_maintain() -> None:
    """Apply retention settings; create partitions ahead and drop expired ones."""
    from portal.db import migrate
    from portal.db.tables import TIMESERIES

    s = cfg()
    retention = {t: getattr(s, field) for t, field in TIMESERIES.items()}
    backend = migrate.maintain(s.database_url, retention, s.partition_premake_days)
    click.echo(f"maintenance done ({backend})")


@db.command("maintain-loop")
@click.option("--every", type=float, default=3600.0, help="Seconds between runs.")
def db_maintain_loop(every: float) -> None:
    """Run `db maintain` forever (the stack has no pg_cron); used by `portal run`."""
    import time

    ctx = click.get_current_context()
    while True:
        ctx.invoke(db_maintain)
        time.sleep(every)


# -- events -----------------------------------------------------------------------------------
@cli.group()
def events() -> None:
    """Publish and follow events (table + LISTEN/NOTIFY)."""


def _payload(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise PortalError(f"payload is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PortalError('payload must be a JSON object, e.g. \'{"host": "cn07"}\'')
    return value


@events.command("publish")
@click.argument("topic")
@click.argument("payload", default="{}")
@click.option("--source", default="cli", help="Who publishes.")
def events_publish(topic: str, payload: str, source: str) -> None:
    """Publish an event: TOPIC and a JSON object PAYLOAD; prints its id."""
    from portal import events as bus

    click.echo(bus.publish(cfg().database_url, topic, _payload(payload), source=source))


@events.command("tail")
@click.option("--topic", "topics", multiple=True, help="Topic or pattern (ops.*); repeatable.")
@click.option("--since", type=int, default=None, help="Start after this event id.")
@click.option("--name", default=None, help="Durable cursor name: resume where it stopped.")
@click.option("--follow/--no-follow", default=True, help="Keep waiting for new events.")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text")
def events_tail(
    topics: tuple[str, ...],
    since: int | None,
    name: str | None,
    follow: bool,
    timeout: float | None,
    fmt: str,
) -> None:
    """Print events in order: missed ones first, then live ones."""
    from portal import events as bus

    if since is None and name is None and follow:
        since = bus.last_id(cfg().database_url)  # plain `tail`: only new events
    with bus.Subscription(cfg().database_url, topics, since=since, name=name) as sub:
        for ev in sub.events(follow=follow, timeout=timeout):
            if fmt == "jsonl":
                line = ev.as_json()
            else:
                line = (
                    f"{ev.time.isoformat()} {ev.id} {ev.topic} {ev.source or '-'} "
                    f"{json.dumps(ev.payload, default=str)}"
                )
            click.echo(line)
            sys.stdout.flush()


# -- run --------------------------------------------------------------------------------------
@cli.command("run")
@click.option("--no-demo", is_flag=True, help="Do not start the pipeline simulator.")
def run_cmd(no_demo: bool) -> None:
    """Everything `make run` does: stack up, db upgrade, then the components in the foreground."""
    from portal import run

    run.main(cfg(), demo=not no_demo)


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
        if not _is_connection_error(exc):
            raise
        from portal.db.engine import describe_unreachable
        from portal.errors import DatabaseUnavailable

        err = DatabaseUnavailable(
            describe_unreachable(cfg().database_url, getattr(exc, "orig", None) or exc)
        )
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
