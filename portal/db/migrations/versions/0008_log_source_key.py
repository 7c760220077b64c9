"""Log sources: each shipped file's natural key, so a shipper that lost its state resumes.

The shipper keys log rows by (source, byte offset, time) with the unique index
``log_lines_key``. ``log_sources`` lists every source a shipper opened, by host and the
fingerprint of the file's first line (it is small: one row per file, not per line), so a file
the shipper's state no longer knows (state dir lost, file restored on another inode) is matched
to its stored rows and shipped from where they end, never twice.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_sources",
        sa.Column("key", sa.Text, primary_key=True),  # log_lines.source of the file's rows
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),  # hash of the file's first line
        sa.Column("path", sa.Text, nullable=False),  # where it was first seen (for people)
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("log_sources_host_fingerprint", "log_sources", ["host", "fingerprint"])


def downgrade() -> None:
    op.drop_table("log_sources")
