"""Log lines counted per hour, host, component and level (``portal.db.log_counts``).

``log_counts_hourly`` is a table kept by a statement-level trigger on ``log_lines`` and filled
here from the lines stored so far, or a TimescaleDB continuous aggregate of the same name and
columns. The log panels read it instead of counting a month of raw lines.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from portal import settings
from portal.db import log_counts, timeseries

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    backend = timeseries.installed_backend(op.get_bind())
    ddl = (
        log_counts.timescale_ddl(settings.get().logs_retention_days)
        if backend == "timescaledb"
        else log_counts.plain_ddl()
    )
    for stmt in ddl:
        op.execute(stmt)


def downgrade() -> None:
    backend = timeseries.installed_backend(op.get_bind())
    teardown = (
        log_counts.timescale_teardown_ddl()
        if backend == "timescaledb"
        else log_counts.plain_teardown_ddl()
    )
    for stmt in teardown:
        op.execute(stmt)
