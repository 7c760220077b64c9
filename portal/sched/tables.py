"""The scheduler's tables: the work queue and the decisions taken on it (schema: migration 0006)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from portal.db.tables import TS, metadata

#: queued -> submitted (a Slurm job exists) -> running -> done | failed; cancelled by an operator.
STATES = ("queued", "submitted", "running", "done", "failed", "cancelled")

work = sa.Table(
    "sched_work",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),  # a registered WorkKind
    sa.Column("key", sa.Text, nullable=False),  # what to process, e.g. a day 2026-11-30
    sa.Column("priority", sa.Integer, nullable=False),  # added to the kind's priority
    sa.Column("pointing_days", sa.Float, nullable=False),  # sky coverage it stands for
    sa.Column("enqueued_at", TS, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),  # submissions so far
    sa.Column("job_id", sa.BigInteger),  # the Slurm job of the current attempt
    sa.Column("submitted_at", TS),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
    sa.Column("slurm_reason", sa.Text),  # Slurm's pending reason while it waits
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", TS, nullable=False),
)

decisions = sa.Table(
    "sched_decisions",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("time", TS, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),  # submit, hold, scale-in, retry, stuck, ...
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("work_id", sa.BigInteger),
    sa.Column("job_id", sa.BigInteger),
    sa.Column("details", JSONB, nullable=False),
)
