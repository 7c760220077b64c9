"""The operations tables (SQLAlchemy Core, on the shared metadata; created by migration 0004).

``ops_runs`` is the queue and the history of actions; ``ops_steps`` their step-by-step progress;
``ops_host_locks`` allows one action at a time per host (the primary key is the lock);
``ops_maintenance`` the maintenance windows and their Alertmanager silences; ``ops_drains``
the hosts that take no new batch work.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from portal.db.tables import metadata

TS = sa.DateTime(timezone=True)
RUN_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
STEP_STATES = ("running", "succeeded", "failed", "skipped")

ops_runs = sa.Table(
    "ops_runs",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("params", JSONB, nullable=False),
    sa.Column("hosts", ARRAY(sa.Text), nullable=False),  # each is locked while the run runs
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),  # audit label: user:alice, cli:root@head
    sa.Column("role", sa.Text, nullable=False),  # the actor's role when requesting
    sa.Column("source", sa.Text, nullable=False),  # client address or CLI host
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # queued | running | succeeded | failed | ...
    sa.Column("worker", sa.BigInteger),  # the claiming worker's advisory-lock key
    sa.Column("attempts", sa.Integer, nullable=False),  # claims so far (resumed runs: > 1)
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("progress", JSONB, nullable=False),  # what a resumable action has done so far
    sa.Column("result", JSONB),  # before / after / whatever the action reports
    sa.Column("error", sa.Text),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
)

ops_steps = sa.Table(
    "ops_steps",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("ops_runs.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("host", sa.Text, nullable=False),  # "" for a step not tied to one host
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
)

ops_host_locks = sa.Table(
    "ops_host_locks",
    metadata,
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("ops_runs.id"), nullable=False),
    sa.Column("locked_at", TS, nullable=False),
)

ops_maintenance = sa.Table(
    "ops_maintenance",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("ends_at", TS, nullable=False),
    sa.Column("silence_id", sa.Text, nullable=False),
    sa.Column("previous_state", sa.Text, nullable=False),  # the inventory state to restore
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("ops_runs.id")),
    sa.Column("warned_at", TS),  # "ends soon" announced
    sa.Column("ended_at", TS),  # ended by an operator or expired (announced)
    sa.Column("ended_by", sa.Text),
)

ops_drains = sa.Table(
    "ops_drains",
    metadata,
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("drained_at", TS, nullable=False),
    sa.Column("forced", sa.Boolean, nullable=False),
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("ops_runs.id")),
)
