"""``portal db``: schema migrations and partition maintenance."""

from __future__ import annotations

import sys

import click

from portal import settings
from portal.auth.roles import requires


def cfg() -> settings.Settings:
    return settings.get()


@click.group()
def db() -> None:
    """Schema migrations and partition maintenance."""


@requires("admin")
@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Create the database if needed and migrate it to REVISION (default: head)."""
    from portal.db import migrate

    migrate.upgrade(cfg().database_url, revision)
    st = migrate.status(cfg().database_url)
    click.echo(f"database at revision {st.current} (partitioning: {st.backend})")


@requires("admin")
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


@requires("admin")
@db.command("maintain")
def db_maintain() -> None:
    """Apply retention settings; create partitions ahead and drop expired ones."""
    from portal.db import migrate
    from portal.db.tables import TIMESERIES

    s = cfg()
    retention = {t: getattr(s, field) for t, field in TIMESERIES.items()}
    backend = migrate.maintain(s.database_url, retention, s.partition_premake_days)
    click.echo(f"maintenance done ({backend})")


@requires("admin")
@db.command("maintain-loop")
@click.option("--every", type=float, default=3600.0, help="Seconds between runs.")
def db_maintain_loop(every: float) -> None:
    """Run `db maintain` forever (the stack has no pg_cron); used by `portal run`."""
    import time

    ctx = click.get_current_context()
    while True:
        ctx.invoke(db_maintain)
        time.sleep(every)
