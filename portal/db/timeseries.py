"""Time partitioning of the time-series tables: TimescaleDB when present, else pg_partman.

The migrations call ``setup_ddl`` so the same schema becomes hypertables (compression and
retention policies) on TimescaleDB, daily native partitions managed by pg_partman on plain
PostgreSQL, or, on a server with neither (an embedded wheel), one DEFAULT partition that holds
everything and is trimmed by ``DELETE``.

Append-only tables (the audit log) refuse UPDATE, DELETE and TRUNCATE through triggers; their
retention only ever drops whole partitions (DDL, which fires no trigger), so on a server with
neither engine they are not trimmed at all.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, text

from portal.db import log_counts

Backend = Literal["timescaledb", "partman", "plain"]

log = logging.getLogger("portal.db.timeseries")

#: Tables whose rows may only be added (see ``append_only_ddl``).
APPEND_ONLY = frozenset({"audit_log"})


def available_backend(conn: Connection) -> Backend:
    """Pick the best partitioning engine this server offers."""
    names = set(
        conn.execute(
            text(
                "SELECT name FROM pg_available_extensions "
                "WHERE name IN ('timescaledb', 'pg_partman')"
            )
        ).scalars()
    )
    if "timescaledb" in names:
        return "timescaledb"
    if "pg_partman" in names:
        return "partman"
    return "plain"


def installed_backend(conn: Connection) -> Backend:
    """The engine the migrated schema actually uses."""
    names = set(
        conn.execute(
            text("SELECT extname FROM pg_extension WHERE extname IN ('timescaledb', 'pg_partman')")
        ).scalars()
    )
    if "timescaledb" in names:
        return "timescaledb"
    if "pg_partman" in names:
        return "partman"
    return "plain"


def partition_clause(backend: Backend) -> str:
    """What follows ``CREATE TABLE t (...)``: hypertables start as plain tables."""
    return "" if backend == "timescaledb" else " PARTITION BY RANGE (time)"


def extension_ddl(backend: Backend) -> list[str]:
    if backend == "timescaledb":
        return ["CREATE EXTENSION IF NOT EXISTS timescaledb"]
    if backend == "partman":
        return [
            "CREATE SCHEMA IF NOT EXISTS partman",
            "CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman",
        ]
    return []


def setup_ddl(
    backend: Backend,
    table: str,
    retention_days: int,
    premake_days: int,
    segment_by: str,
    start: date | None = None,
    compress: bool = True,
) -> list[str]:
    """Statements that turn the freshly created ``table`` into a time-partitioned table.

    ``compress=False`` leaves TimescaleDB chunks uncompressed (the append-only audit log: small,
    and its chunks are never rewritten).
    """
    if backend == "timescaledb":
        hyper = [
            f"SELECT create_hypertable('{table}', 'time', chunk_time_interval => INTERVAL '1 day')"
        ]
        if compress:
            hyper += [
                f"ALTER TABLE {table} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = '{segment_by}', "
                f"timescaledb.compress_orderby = 'time DESC')",
                f"SELECT add_compression_policy('{table}', INTERVAL '2 days')",
            ]
        return [
            *hyper,
            f"SELECT add_retention_policy('{table}', INTERVAL '{retention_days} days')",
        ]
    brin = f"CREATE INDEX {table}_time_brin ON {table} USING brin (time)"
    if backend == "partman":
        start_day = (start or (datetime.utcnow().date() - timedelta(days=1))).isoformat()
        return [
            brin,
            f"SELECT partman.create_parent(p_parent_table => 'public.{table}', "
            f"p_control => 'time', p_type => 'native', p_interval => 'daily', "
            f"p_premake => {premake_days}, p_start_partition => '{start_day}')",
            f"UPDATE partman.part_config SET retention = '{retention_days} days', "
            f"retention_keep_table = false, infinite_time_partitions = true "
            f"WHERE parent_table = 'public.{table}'",
        ]
    return [brin, f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT"]


def teardown_ddl(backend: Backend, table: str) -> list[str]:
    """Undo ``setup_ddl`` bookkeeping before the table is dropped."""
    if backend == "partman":
        return [
            f"DELETE FROM partman.part_config WHERE parent_table = 'public.{table}'",
            f"DROP TABLE IF EXISTS partman.template_public_{table}",
        ]
    return []


def append_only_ddl(table: str) -> list[str]:
    """Triggers that make ``table`` refuse UPDATE, DELETE and TRUNCATE with one clear error.

    The row trigger on a partitioned table is cloned onto every partition, present and future;
    statement triggers are not, so ``protect_partitions`` adds the TRUNCATE one to each partition.
    Dropping a partition or a chunk (retention) is DDL and fires none of them.
    """
    fn = f"{table}_refuse_change"
    return [
        f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"RAISE EXCEPTION '{table} is append-only: % refused on %', TG_OP, TG_TABLE_NAME "
        f"USING HINT = 'entries leave only when retention drops their whole partition'; "
        f"END $$",
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {fn}()",
        f"CREATE TRIGGER {table}_append_only_statement BEFORE UPDATE OR DELETE OR TRUNCATE "
        f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {fn}()",
    ]


def append_only_teardown_ddl(table: str) -> list[str]:
    """Undo ``append_only_ddl`` (drop the table first: its triggers go with it)."""
    return [f"DROP FUNCTION IF EXISTS {table}_refuse_change() CASCADE"]


def protect_partitions(conn: Connection, table: str) -> int:
    """Add the TRUNCATE guard to each partition of ``table`` lacking it; returns how many."""
    missing = list(
        conn.execute(
            text(
                "SELECT c.oid::regclass::text FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass(:t) AND NOT EXISTS ("
                "SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = :name)"
            ),
            {"t": f"public.{table}", "name": f"{table}_no_truncate"},
        ).scalars()
    )
    for part in missing:
        conn.execute(
            text(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {part} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_refuse_change()"
            )
        )
    return len(missing)


def ensure_partitions(conn: Connection, table: str, first: date, last: date) -> int:
    """Create daily partitions covering ``first``..``last`` (for backfills); returns days asked."""
    if installed_backend(conn) != "partman":
        return 0  # hypertables chunk themselves; plain keeps a DEFAULT partition
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    moved = _set_aside_default_rows(conn, table, first, last)
    conn.execute(
        text("SELECT partman.create_partition_time(:parent, CAST(:days AS timestamptz[]))"),
        {"parent": f"public.{table}", "days": "{" + ",".join(days) + "}"},
    )
    if moved:
        for day in days:  # into each child, not the parent: its insert triggers count rows once
            conn.execute(
                text(
                    f"INSERT INTO {table}_p{day.replace('-', '_')} SELECT * FROM {moved} "
                    "WHERE time >= CAST(:day AS date) AND time < CAST(:day AS date) + 1"
                ),
                {"day": day},
            )
        conn.execute(text(f"DROP TABLE {moved}"))
    if table in APPEND_ONLY:
        protect_partitions(conn, table)
    return len(days)


def _set_aside_default_rows(conn: Connection, table: str, first: date, last: date) -> str:
    """Rows of these days already in the DEFAULT partition (written before their day had a
    partition) would make the new partition's ATTACH fail: move them to a temp table first."""
    bounds = {"lo": first, "hi": last + timedelta(days=1)}
    where = "time >= CAST(:lo AS date) AND time < CAST(:hi AS date)"
    if (
        table in APPEND_ONLY
        or not conn.execute(
            text(f"SELECT EXISTS (SELECT 1 FROM {table}_default WHERE {where})"), bounds
        ).scalar()
    ):
        return ""
    moved = f"pg_temp.{table}_set_aside"
    conn.execute(text(f"CREATE TEMP TABLE {table}_set_aside (LIKE {table})"))
    conn.execute(
        text(
            f"WITH gone AS (DELETE FROM {table}_default WHERE {where} RETURNING *) "
            f"INSERT INTO {moved} SELECT * FROM gone"
        ),
        bounds,
    )
    return moved


def maintain(conn: Connection, retention: dict[str, int], premake_days: int) -> Backend:
    """Apply retention settings and create/drop partitions (idempotent; run it hourly)."""
    backend = installed_backend(conn)
    if backend == "partman":
        for table, days in retention.items():
            conn.execute(
                text(
                    "UPDATE partman.part_config SET retention = :r, premake = :p, "
                    "retention_keep_table = false WHERE parent_table = :t"
                ),
                {"r": f"{days} days", "p": premake_days, "t": f"public.{table}"},
            )
        conn.execute(text("SELECT partman.run_maintenance(p_analyze => false)"))
        for table in sorted(APPEND_ONLY & set(retention)):
            protect_partitions(conn, table)
    elif backend == "timescaledb":
        for table, days in retention.items():
            conn.execute(text(f"SELECT remove_retention_policy('{table}', if_exists => true)"))
            conn.execute(text(f"SELECT add_retention_policy('{table}', INTERVAL '{days} days')"))
    else:
        for table, days in retention.items():
            if table in APPEND_ONLY:
                log.info(
                    "%s: retention skipped: without pg_partman or TimescaleDB it would need "
                    "DELETE, which this append-only table refuses",
                    table,
                )
                continue
            conn.execute(
                text(f"DELETE FROM {table} WHERE time < now() - make_interval(days => :d)"),
                {"d": days},
            )
    if log_counts.SOURCE in retention:  # the hourly log counts follow the logs' retention
        log_counts.prune(conn, backend, retention[log_counts.SOURCE])
    return backend


def partitions(conn: Connection, table: str) -> list[str]:
    """Names of the table's child partitions, oldest first."""
    return list(
        conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t ORDER BY c.relname"
            ),
            {"t": table},
        ).scalars()
    )
