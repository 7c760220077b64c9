"""Alembic environment: the URL comes from the caller (``portal db``) or from settings."""

from __future__ import annotations

from alembic import context

from portal import settings
from portal.db.engine import get_engine

url = context.config.attributes.get("database_url") or settings.get().database_url
engine = get_engine(url)

with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
