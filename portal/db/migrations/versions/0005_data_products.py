"""Data products: catalog, replicas, replication rules, transfer requests.

The catalog gains the producer's fields (origin site, beam, sky position, retention class) and
a sequence default for ``id`` so the write path's staging COPY (``LIKE ... INCLUDING DEFAULTS``)
can fill it; replicas take Rucio's states. New: sites, rules, transfer requests, deletions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
NOW = sa.text("now()")
EMPTY = sa.text("'{}'::jsonb")
OLD_TO_NEW = {"pending": "COPYING", "copying": "COPYING", "verified": "AVAILABLE", "failed": "BAD"}


def _states(column: str, states: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(s) for s in states)})"


def upgrade() -> None:
    op.execute("ALTER TABLE data_products ALTER COLUMN id DROP IDENTITY IF EXISTS")
    op.execute("CREATE SEQUENCE data_products_id_seq OWNED BY data_products.id")
    op.execute(
        "SELECT setval('data_products_id_seq', coalesce(max(id), 0) + 1, false) FROM data_products"
    )
    op.execute(
        "ALTER TABLE data_products ALTER COLUMN id SET DEFAULT nextval('data_products_id_seq')"
    )
    op.add_column(
        "data_products", sa.Column("site", sa.Text, nullable=False, server_default="local")
    )
    op.add_column("data_products", sa.Column("beam", sa.Integer))
    op.add_column("data_products", sa.Column("ra_deg", sa.Float))
    op.add_column("data_products", sa.Column("dec_deg", sa.Float))
    op.add_column(
        "data_products", sa.Column("retention", sa.Text, nullable=False, server_default="standard")
    )
    op.create_index("data_products_created", "data_products", ["created_at"])
    op.create_index("data_products_beam_time", "data_products", ["beam", "time_start"])

    op.drop_constraint("replicas_state_valid", "replicas", type_="check")
    for old, new in OLD_TO_NEW.items():
        op.execute(f"UPDATE replicas SET state = '{new}' WHERE state = '{old}'")
    op.alter_column("replicas", "state", server_default="COPYING")
    op.add_column("replicas", sa.Column("updated_at", TS, nullable=False, server_default=NOW))
    op.create_check_constraint(
        "replicas_state_valid",
        "replicas",
        _states("state", ("AVAILABLE", "COPYING", "UNAVAILABLE", "BAD", "BEING_DELETED")),
    )
    op.create_index("replicas_site_state", "replicas", ["site", "state"])

    op.create_table(
        "data_sites",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("max_active", sa.Integer, nullable=False, server_default="2"),
        sa.Column("bwlimit_kbps", sa.Integer, nullable=False, server_default="0"),
        sa.Column("capacity_bytes", sa.BigInteger),
        sa.Column("options", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.CheckConstraint("max_active > 0 AND bwlimit_kbps >= 0", name="data_sites_limits"),
    )
    op.create_table(
        "replication_rules",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("selector", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("site", sa.Text, sa.ForeignKey("data_sites.name"), nullable=False),
        sa.Column("within_s", sa.Integer, nullable=False, server_default="86400"),
        sa.Column("state", sa.Text, nullable=False, server_default="REPLICATING"),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("progress_at", TS, nullable=False, server_default=NOW),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.CheckConstraint(
            _states("state", ("OK", "REPLICATING", "STUCK", "SUSPENDED")),
            name="replication_rules_state_valid",
        ),
    )
    op.create_table(
        "transfer_requests",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "product_id",
            sa.BigInteger,
            sa.ForeignKey("data_products.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("site", sa.Text, sa.ForeignKey("data_sites.name"), nullable=False),
        sa.Column(
            "rule_id", sa.BigInteger, sa.ForeignKey("replication_rules.id", ondelete="SET NULL")
        ),
        sa.Column("state", sa.Text, nullable=False, server_default="QUEUED"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("error_class", sa.Text),
        sa.Column("next_attempt_at", TS, nullable=False, server_default=NOW),
        sa.Column("worker", sa.Text),
        sa.Column("lease_until", TS),
        sa.Column("bytes_total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.UniqueConstraint("product_id", "site", name="transfer_requests_product_site"),
        sa.CheckConstraint(
            _states("state", ("QUEUED", "SUBMITTED", "DONE", "FAILED")),
            name="transfer_requests_state_valid",
        ),
    )
    op.create_index("transfer_requests_queue", "transfer_requests", ["state", "next_attempt_at"])
    op.create_table(
        "data_deletions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "product_id",
            sa.BigInteger,
            sa.ForeignKey("data_products.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="ANNOUNCED"),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("announced_at", TS, nullable=False, server_default=NOW),
        sa.Column("not_before", TS, nullable=False),
        sa.Column("vetoed_by", sa.Text),
        sa.Column("veto_reason", sa.Text),
        sa.Column("done_at", TS),
        sa.Column("error", sa.Text),
        sa.CheckConstraint(
            _states("state", ("ANNOUNCED", "VETOED", "DONE", "REFUSED", "FAILED")),
            name="data_deletions_state_valid",
        ),
    )
    op.create_index("data_deletions_due", "data_deletions", ["state", "not_before"])


def downgrade() -> None:
    op.drop_table("data_deletions")
    op.drop_table("transfer_requests")
    op.drop_table("replication_rules")
    op.drop_table("data_sites")
    op.drop_index("replicas_site_state", "replicas")
    op.drop_constraint("replicas_state_valid", "replicas", type_="check")
    op.execute(
        "UPDATE replicas SET state = CASE state WHEN 'AVAILABLE' THEN 'verified' "
        "WHEN 'COPYING' THEN 'copying' WHEN 'BAD' THEN 'failed' ELSE 'failed' END"
    )
    op.alter_column("replicas", "state", server_default="pending")
    op.drop_column("replicas", "updated_at")
    op.create_check_constraint(
        "replicas_state_valid", "replicas", "state IN ('pending', 'copying', 'verified', 'failed')"
    )
    op.drop_index("data_products_beam_time", "data_products")
    op.drop_index("data_products_created", "data_products")
    for column in ("retention", "dec_deg", "ra_deg", "beam", "site"):
        op.drop_column("data_products", column)
    op.execute("ALTER TABLE data_products ALTER COLUMN id DROP DEFAULT")
    op.execute("DROP SEQUENCE data_products_id_seq")
    op.execute("ALTER TABLE data_products ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
    op.execute(
        "SELECT setval(pg_get_serial_sequence('data_products', 'id'), coalesce(max(id), 0) + 1, "
        "false) FROM data_products"
    )
