"""Operations: per-host action locks, action runs and their steps, maintenance windows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "ops_runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("params", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("hosts", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False, server_default=""),
        sa.Column("request_id", sa.Text, nullable=False, server_default=""),
        sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("state", sa.Text, nullable=False, server_default="queued"),
        sa.Column("worker", sa.BigInteger),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("progress", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("result", JSONB),
        sa.Column("error", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="ops_runs_state",
        ),
    )
    op.create_index("ops_runs_queued", "ops_runs", ["id"], postgresql_where="state = 'queued'")
    op.create_index("ops_runs_created", "ops_runs", ["created_at"])
    op.create_table(
        "ops_steps",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey("ops_runs.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("host", sa.Text, nullable=False, server_default=""),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", TS, nullable=False, server_default=NOW),
        sa.Column("finished_at", TS),
        sa.UniqueConstraint("run_id", "seq", name="ops_steps_run_seq"),
        sa.CheckConstraint(
            "state IN ('running', 'succeeded', 'failed', 'skipped')", name="ops_steps_state"
        ),
    )
    op.create_table(
        "ops_host_locks",
        sa.Column("host", sa.Text, primary_key=True),
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey("ops_runs.id"), nullable=False),
        sa.Column("locked_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "ops_maintenance",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("starts_at", TS, nullable=False, server_default=NOW),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("silence_id", sa.Text, nullable=False, server_default=""),
        sa.Column("previous_state", sa.Text, nullable=False, server_default="up"),
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey("ops_runs.id")),
        sa.Column("warned_at", TS),
        sa.Column("ended_at", TS),
        sa.Column("ended_by", sa.Text),
    )
    # at most one open maintenance window per host
    op.create_index(
        "ops_maintenance_open",
        "ops_maintenance",
        ["host"],
        unique=True,
        postgresql_where="ended_at IS NULL",
    )
    op.create_table(
        "ops_drains",
        sa.Column("host", sa.Text, primary_key=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("drained_at", TS, nullable=False, server_default=NOW),
        sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey("ops_runs.id")),
    )


def downgrade() -> None:
    op.drop_table("ops_drains")
    op.drop_table("ops_maintenance")
    op.drop_table("ops_host_locks")
    op.drop_table("ops_steps")
    op.drop_table("ops_runs")
