"""Core tables of the data capability: sites, replication rules, transfer requests, deletions.

Created by migration 0005; the catalog itself (``data_products``, ``replicas``) is in
``portal.db.tables``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from portal.db.tables import TS, metadata

RULE_STATES = ("OK", "REPLICATING", "STUCK", "SUSPENDED")
REQUEST_STATES = ("QUEUED", "SUBMITTED", "DONE", "FAILED")
DELETION_STATES = ("ANNOUNCED", "VETOED", "DONE", "REFUSED", "FAILED")

#: Places copies live: ``url`` is ``file:///root`` or ``ssh://user@host:port/root``.
sites = sa.Table(
    "data_sites",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("max_active", sa.Integer, nullable=False),  # concurrent transfers to the site
    sa.Column("bwlimit_kbps", sa.Integer, nullable=False),  # per transfer; 0: none
    sa.Column("capacity_bytes", sa.BigInteger),  # filesystem size, for days-until-full
    sa.Column("options", JSONB, nullable=False),  # identity_file, known_hosts, globus ids
    sa.Column("created_at", TS, nullable=False),
)

rules = sa.Table(
    "replication_rules",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("selector", JSONB, nullable=False),  # products.metadata must contain this
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("within_s", sa.Integer, nullable=False),  # the copy is due this long after creation
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False),
    sa.Column("progress_at", TS, nullable=False),  # when ``done`` last moved (STUCK clock)
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

transfers = sa.Table(
    "transfer_requests",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("product_id", sa.BigInteger, nullable=False),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("rule_id", sa.BigInteger),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("error_class", sa.Text),  # unreachable | checksum | io | timeout | ...
    sa.Column("next_attempt_at", TS, nullable=False),
    sa.Column("worker", sa.Text),
    sa.Column("lease_until", TS),  # a SUBMITTED request whose lease ran out is taken again
    sa.Column("bytes_total", sa.BigInteger, nullable=False),
    sa.Column("bytes_done", sa.BigInteger, nullable=False),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

deletions = sa.Table(
    "data_deletions",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("product_id", sa.BigInteger, nullable=False),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("announced_at", TS, nullable=False),
    sa.Column("not_before", TS, nullable=False),  # end of the veto window
    sa.Column("vetoed_by", sa.Text),
    sa.Column("veto_reason", sa.Text),
    sa.Column("done_at", TS),
    sa.Column("error", sa.Text),
)
