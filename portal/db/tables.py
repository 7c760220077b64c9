"""SQLAlchemy Core descriptions of the tables, for queries and the write path.

The schema itself is created only by the Alembic migrations in ``migrations/versions``; a test
checks that these descriptions and the migrated database agree column for column.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)

hosts = sa.Table(
    "hosts",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),  # compute | storage | head | ...
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("collector_port", sa.Integer, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # up | maintenance | down | retired
    sa.Column("labels", JSONB, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

components = sa.Table(
    "components",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("host", sa.Text, sa.ForeignKey("hosts.name"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # real-time | batch
    sa.Column("process_match", sa.Text),  # regex on the command line, for per-process stats
    sa.Column("metrics_port", sa.Integer),
    sa.Column("desired_state", sa.Text, nullable=False),  # running | stopped
    sa.Column("labels", JSONB, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

metric_samples = sa.Table(
    "metric_samples",
    metadata,
    sa.Column("time", TS, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("component", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("labels", JSONB, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
)

log_lines = sa.Table(
    "log_lines",
    metadata,
    sa.Column("time", TS, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("component", sa.Text, nullable=False),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("labels", JSONB, nullable=False),
    sa.Column("source", sa.Text),  # shipper file identity or handler instance: idempotency key
    sa.Column("seq", sa.BigInteger),  # byte offset or sequence number within ``source``
)

pointings = sa.Table(
    "pointings",
    metadata,
    sa.Column("time", TS, nullable=False),
    sa.Column("beam", sa.Integer, nullable=False),
    sa.Column("ra_deg", sa.Float, nullable=False),
    sa.Column("dec_deg", sa.Float, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("rfi_fraction", sa.Float),
    sa.Column("data_bytes", sa.BigInteger),
    sa.Column("max_dm", sa.Float),
    sa.Column("n_candidates", sa.Integer),
    sa.Column("flags", JSONB, nullable=False),
)

beam_events = sa.Table(
    "beam_events",
    metadata,
    sa.Column("time", TS, nullable=False),
    sa.Column("beam", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # dm_adjust | packet_loss | restart | ...
    sa.Column("value", sa.Float),
    sa.Column("payload", JSONB, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("time", TS, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("payload", JSONB, nullable=False),
)

event_cursors = sa.Table(
    "event_cursors",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("last_id", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

#: The catalog (owned by ``portal.data``): one row per product, its natural key ``name``; the
#: copy where it was produced is at ``site``/``path`` (``state`` complete | deleted).
data_products = sa.Table(
    "data_products",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),  # l1 | rfi | hhat_daily | hhat_monthly | ...
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("checksum", sa.Text),  # "sha256:<hex>" (algorithm:digest)
    sa.Column("time_start", TS),
    sa.Column("time_end", TS),
    sa.Column("state", sa.Text, nullable=False),  # writing | complete | deleted
    sa.Column("metadata", JSONB, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("site", sa.Text, nullable=False),  # where it was produced (its origin copy)
    sa.Column("beam", sa.Integer),
    sa.Column("ra_deg", sa.Float),  # pointing coverage: sky position
    sa.Column("dec_deg", sa.Float),
    sa.Column("retention", sa.Text, nullable=False),  # retention class
)

#: Copies of a product at other sites (Rucio's replica states).
replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("product_id", sa.BigInteger, sa.ForeignKey("data_products.id"), nullable=False),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    # AVAILABLE | COPYING | UNAVAILABLE | BAD | BEING_DELETED
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("checksum", sa.Text),  # as verified at the site
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("requested_at", TS, nullable=False),
    sa.Column("verified_at", TS),
    sa.Column("updated_at", TS, nullable=False),
)

REPLICA_STATES = ("AVAILABLE", "COPYING", "UNAVAILABLE", "BAD", "BEING_DELETED")

#: Append-only (a trigger refuses UPDATE, DELETE and TRUNCATE); retention drops partitions.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("time", TS, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),  # user:alice, token:alertmanager, cli:root@head
    sa.Column("role", sa.Text, nullable=False),  # the actor's role then ("" if none)
    sa.Column("source", sa.Text, nullable=False),  # client address, or host for the CLI
    sa.Column("action", sa.Text, nullable=False),  # e.g. login, login.failed, user.add
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("params", JSONB, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),  # ok | refused | failed | error: ...
    sa.Column("before", JSONB),
    sa.Column("after", JSONB),
    sa.Column("request_id", sa.Text, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text),  # Argon2; NULL: proxy sign-on only
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("sessions_after", TS),  # sessions issued before are void (logout, new password)
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),  # sha256 of the secret
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS),
    sa.Column("revoked_at", TS),
    sa.Column("last_used_at", TS),
)

#: Time-series tables: partitioned by day (or hypertables), with their retention setting.
TIMESERIES: dict[str, str] = {
    "metric_samples": "metrics_retention_days",
    "log_lines": "logs_retention_days",
    "pointings": "pointings_retention_days",
    "beam_events": "pointings_retention_days",
    "audit_log": "audit_retention_days",  # append-only: retention drops partitions, never DELETE
    "events": "events_retention_days",
}

#: The columns that make a row unique, so that replaying a spool never duplicates. Tables in
#: ``ENFORCED_KEYS`` have a unique index on them (``ON CONFLICT DO NOTHING``); the others are
#: deduplicated on replay with ``NOT EXISTS`` to keep the hot COPY path free of a unique index.
IDEMPOTENCY_KEYS: dict[str, tuple[str, ...]] = {
    "metric_samples": ("name", "host", "component", "labels", "time"),
    "log_lines": ("source", "seq", "time"),
    "pointings": ("beam", "time"),
    "beam_events": ("beam", "kind", "time"),
    "data_products": ("name",),
}
ENFORCED_KEYS = frozenset({"log_lines", "pointings", "beam_events", "data_products"})
