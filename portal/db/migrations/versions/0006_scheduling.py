"""Batch scheduling: the work queue (one row per work item and its Slurm job) and the
scheduler's decisions with their reasons.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
NOW = sa.text("now()")
STATES = "state IN ('queued', 'submitted', 'running', 'done', 'failed', 'cancelled')"


def upgrade() -> None:
    op.create_table(
        "sched_work",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pointing_days", sa.Float, nullable=False, server_default="0"),
        sa.Column("enqueued_at", TS, nullable=False, server_default=NOW),
        sa.Column("state", sa.Text, nullable=False, server_default="queued"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("job_id", sa.BigInteger),
        sa.Column("submitted_at", TS),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.Column("slurm_reason", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.CheckConstraint(STATES, name="sched_work_state"),
        sa.UniqueConstraint("kind", "key", name="sched_work_kind_key"),
    )
    op.create_index("sched_work_open", "sched_work", ["state", "enqueued_at"])
    op.create_table(
        "sched_decisions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("time", TS, nullable=False, server_default=NOW),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("work_id", sa.BigInteger),
        sa.Column("job_id", sa.BigInteger),
        sa.Column("details", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.create_index("sched_decisions_time", "sched_decisions", ["time"])


def downgrade() -> None:
    op.drop_table("sched_decisions")
    op.drop_table("sched_work")
