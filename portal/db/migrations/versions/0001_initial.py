"""Initial schema: inventory, time series, events, data products, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from portal import settings
from portal.db import timeseries

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
NOW = sa.text("now()")
EMPTY = sa.text("'{}'::jsonb")

# Column lists of the time-series tables, frozen here as of this revision.
TIMESERIES_COLUMNS = {
    "metric_samples": """
        time timestamptz NOT NULL, host text NOT NULL, component text NOT NULL DEFAULT '',
        name text NOT NULL, labels jsonb NOT NULL DEFAULT '{}', value double precision NOT NULL""",
    "log_lines": """
        time timestamptz NOT NULL, host text NOT NULL, component text NOT NULL DEFAULT '',
        level text NOT NULL DEFAULT 'INFO', message text NOT NULL,
        labels jsonb NOT NULL DEFAULT '{}', source text, seq bigint""",
    "pointings": """
        time timestamptz NOT NULL, beam integer NOT NULL, ra_deg double precision NOT NULL,
        dec_deg double precision NOT NULL, duration_s double precision NOT NULL,
        rfi_fraction double precision, data_bytes bigint, max_dm double precision,
        n_candidates integer, flags jsonb NOT NULL DEFAULT '{}'""",
    "beam_events": """
        time timestamptz NOT NULL, beam integer NOT NULL, kind text NOT NULL,
        value double precision, payload jsonb NOT NULL DEFAULT '{}'""",
}
TIMESERIES_INDEXES = {
    # No unique index on the hottest table: it would halve COPY throughput. Replays dedupe
    # with NOT EXISTS through this index instead (see portal.db.writer).
    "metric_samples": [
        "CREATE INDEX metric_samples_host_time ON metric_samples (host, name, time DESC)",
    ],
    "log_lines": [
        "CREATE UNIQUE INDEX log_lines_key ON log_lines (source, seq, time)",
        "CREATE INDEX log_lines_host_component_time ON log_lines (host, component, time)",
    ],
    "pointings": ["CREATE UNIQUE INDEX pointings_key ON pointings (beam, time)"],
    "beam_events": ["CREATE UNIQUE INDEX beam_events_key ON beam_events (beam, kind, time)"],
}
SEGMENT_BY = {
    "metric_samples": "name, host",
    "log_lines": "host, component",
    "pointings": "beam",
    "beam_events": "beam",
}
RETENTION_SETTING = {
    "metric_samples": "metrics_retention_days",
    "log_lines": "logs_retention_days",
    "pointings": "pointings_retention_days",
    "beam_events": "pointings_retention_days",
}


def upgrade() -> None:
    conn = op.get_bind()
    cfg = settings.get()
    backend = timeseries.available_backend(conn)
    for stmt in timeseries.extension_ddl(backend):
        op.execute(stmt)

    op.create_table(
        "hosts",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False, server_default="compute"),
        sa.Column("address", sa.Text, nullable=False, server_default="127.0.0.1"),
        sa.Column("collector_port", sa.Integer, nullable=False, server_default="9105"),
        sa.Column("state", sa.Text, nullable=False, server_default="up"),
        sa.Column("labels", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "state IN ('up', 'maintenance', 'down', 'retired')", name="hosts_state_valid"
        ),
    )
    op.create_table(
        "components",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("host", sa.Text, sa.ForeignKey("hosts.name", onupdate="CASCADE"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("process_match", sa.Text),
        sa.Column("metrics_port", sa.Integer),
        sa.Column("desired_state", sa.Text, nullable=False, server_default="running"),
        sa.Column("labels", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.UniqueConstraint("host", "name", name="components_host_name"),
        sa.CheckConstraint("kind IN ('real-time', 'batch')", name="components_kind_valid"),
    )

    for table, columns in TIMESERIES_COLUMNS.items():
        op.execute(f"CREATE TABLE {table} ({columns}){timeseries.partition_clause(backend)}")
        for stmt in TIMESERIES_INDEXES[table]:
            op.execute(stmt)
        for stmt in timeseries.setup_ddl(
            backend,
            table,
            getattr(cfg, RETENTION_SETTING[table]),
            cfg.partition_premake_days,
            SEGMENT_BY[table],
        ):
            op.execute(stmt)

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("time", TS, nullable=False, server_default=NOW),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False, server_default=""),
        sa.Column("payload", JSONB, nullable=False, server_default=EMPTY),
    )
    op.create_index("events_topic_id", "events", ["topic", "id"])
    op.create_index("events_time", "events", ["time"])
    op.create_table(
        "event_cursors",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "data_products",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("checksum", sa.Text),
        sa.Column("time_start", TS),
        sa.Column("time_end", TS),
        sa.Column("state", sa.Text, nullable=False, server_default="complete"),
        sa.Column("metadata", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index("data_products_kind_time", "data_products", ["kind", "time_start"])
    op.create_table(
        "replicas",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "product_id",
            sa.BigInteger,
            sa.ForeignKey("data_products.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("checksum", sa.Text),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("requested_at", TS, nullable=False, server_default=NOW),
        sa.Column("verified_at", TS),
        sa.UniqueConstraint("product_id", "site", name="replicas_product_site"),
        sa.CheckConstraint(
            "state IN ('pending', 'copying', 'verified', 'failed')", name="replicas_state_valid"
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("time", TS, nullable=False, server_default=NOW),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False, server_default=""),
        sa.Column("details", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("outcome", sa.Text, nullable=False, server_default="ok"),
    )
    op.create_index("audit_log_time", "audit_log", ["time"])


def downgrade() -> None:
    conn = op.get_bind()
    backend = timeseries.installed_backend(conn)
    for table in ("audit_log", "replicas", "data_products", "event_cursors", "events"):
        op.drop_table(table)
    for table in reversed(list(TIMESERIES_COLUMNS)):
        for stmt in timeseries.teardown_ddl(backend, table):
            op.execute(stmt)
        op.execute(f"DROP TABLE {table} CASCADE")
    op.drop_table("components")
    op.drop_table("hosts")
    if backend == "partman":
        op.execute("DROP EXTENSION IF EXISTS pg_partman")
        op.execute("DROP SCHEMA IF EXISTS partman CASCADE")
