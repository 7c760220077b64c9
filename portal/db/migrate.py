"""Alembic, driven from code so that ``portal db`` needs no alembic.ini on the user's side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from portal.db import timeseries
from portal.db.engine import ensure_database, get_engine
from portal.db.tables import TIMESERIES

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Create the database when missing, then migrate it (idempotent)."""
    ensure_database(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


@dataclass
class Status:
    current: str | None
    head: str | None
    backend: str
    partitions: dict[str, list[str]]

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def status(url: str) -> Status:
    """Revision, partitioning engine and partitions of each time-series table."""
    with get_engine(url).connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        backend = timeseries.installed_backend(conn) if current else "none"
        parts: dict[str, list[str]] = {}
        if current:
            for table in TIMESERIES:
                parts[table] = timeseries.partitions(conn, table)
    return Status(current, head_revision(), backend, parts)


def maintain(url: str, retention: dict[str, int], premake_days: int) -> str:
    """Run partition maintenance and retention in one transaction."""
    with get_engine(url).begin() as conn:
        conn.execute(sa.text("SET LOCAL client_min_messages = warning"))
        return timeseries.maintain(conn, retention, premake_days)
