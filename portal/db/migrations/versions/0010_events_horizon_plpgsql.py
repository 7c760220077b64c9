"""Events: ``events_horizon()`` in PL/pgSQL, its plan kept for the session.

As a SQL function with sub-selects it could not be inlined, so every subscriber read planned
its body again, ``pg_stat_activity``'s joins included: about 0.3 ms of server CPU a read, most
of a busy subscriber's cost. PL/pgSQL keeps the plan, and ``pg_stat_get_activity`` alone
gives the two columns needed. Same answer: the oldest transaction of this database still
running in the snapshot (an unknown one counts as ours), or the snapshot's end.

The id base (first transaction id, offset) written into the function by 0007 is read back
from its definition and kept.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import re

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PER_TRANSACTION = 1 << 20
BASE = re.compile(r"- (\d+)\) \* " + str(PER_TRANSACTION) + r" \+ (\d+)")


def _base() -> tuple[int, int]:
    """(first transaction id, offset) as 0007 wrote them into the function."""
    body = op.get_bind().execute(
        text("SELECT pg_get_functiondef('events_horizon()'::regprocedure)")
    )
    found = BASE.search(body.scalar_one())
    if found is None:
        raise RuntimeError("events_horizon() has no id base this migration can read")
    return int(found[1]), int(found[2])


def upgrade() -> None:
    first_xid, offset = _base()
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION events_horizon() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
        DECLARE
            oldest xid8;
        BEGIN
            SELECT min(x) INTO oldest FROM pg_snapshot_xip(pg_current_snapshot()) AS x
            WHERE xid(x) NOT IN (
                SELECT a.backend_xid FROM pg_stat_get_activity(NULL) AS a
                WHERE a.backend_xid IS NOT NULL AND a.datid IS DISTINCT FROM
                    (SELECT oid FROM pg_database WHERE datname = current_database()));
            RETURN (coalesce(oldest, pg_snapshot_xmax(pg_current_snapshot()))::text::bigint
                - {first_xid}) * {PER_TRANSACTION} + {offset};
        END $$"""
    )


def downgrade() -> None:
    first_xid, offset = _base()
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION events_horizon() RETURNS bigint LANGUAGE sql STABLE AS $$
            SELECT (coalesce(
                (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
                 WHERE xid(x) NOT IN (
                    SELECT backend_xid FROM pg_stat_activity
                    WHERE backend_xid IS NOT NULL
                      AND datname IS DISTINCT FROM current_database())),
                pg_snapshot_xmax(pg_current_snapshot())
            )::text::bigint - {first_xid}) * {PER_TRANSACTION} + {offset}
        $$"""
    )
