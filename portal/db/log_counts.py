"""Log lines counted per hour, host, component and level: what the log panels count over 30 days.

Counting a month of ``log_lines`` reads millions of rows; ``log_counts_hourly`` holds the same
counts pre-aggregated, a few rows per host and hour. It is kept like the pointings summaries
(``portal.db.summaries``): on plain PostgreSQL by a statement-level trigger on ``log_lines``
(each COPY batch of the write path adds its own rows, once; a replayed row that
``ON CONFLICT DO NOTHING`` skips is not in the transition table, so it adds nothing), with
TimescaleDB as a continuous aggregate of the same name and columns. Its rows go with the logs'
retention: ``prune`` runs in the time-series maintenance (``timeseries.maintain``).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

TABLE = "log_counts_hourly"
SOURCE = "log_lines"  # the raw table it counts, whose retention it follows
KEY = "bucket, host, component, level"
TRIGGER = "log_lines_count"


def table_ddl() -> str:
    return (
        f"CREATE TABLE {TABLE} (bucket timestamptz NOT NULL, host text NOT NULL, "
        f"component text NOT NULL, level text NOT NULL, lines bigint NOT NULL, "
        f"PRIMARY KEY ({KEY}))"
    )


def upsert(source: str) -> str:
    """``source`` rows counted by hour and added to the rollup. Sorted, so concurrent writers
    lock rollup rows in one order and cannot deadlock."""
    return (
        f"INSERT INTO {TABLE} AS c ({KEY}, lines) "
        f"SELECT date_trunc('hour', time, 'UTC'), host, component, level, count(*) "
        f"FROM {source} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
        f"ON CONFLICT ({KEY}) DO UPDATE SET lines = c.lines + excluded.lines"
    )


def plain_ddl() -> list[str]:
    """The rollup table, the trigger that keeps it, and a backfill of the lines stored so far."""
    return [
        table_ddl(),
        f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n{upsert('new_log_lines')};\nRETURN NULL;\nEND $$",
        f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON {SOURCE} "
        "REFERENCING NEW TABLE AS new_log_lines "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER}()",
        # emptying the log table (benchmarks, a reset) empties its counts too
        f"CREATE FUNCTION {TRIGGER}_reset() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\nTRUNCATE {TABLE};\nRETURN NULL;\nEND $$",
        f"CREATE TRIGGER {TRIGGER}_reset AFTER TRUNCATE ON {SOURCE} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER}_reset()",
        upsert(SOURCE),
    ]


def plain_teardown_ddl() -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {TRIGGER} ON {SOURCE}",
        f"DROP TRIGGER IF EXISTS {TRIGGER}_reset ON {SOURCE}",
        f"DROP FUNCTION IF EXISTS {TRIGGER}()",
        f"DROP FUNCTION IF EXISTS {TRIGGER}_reset()",
        f"DROP TABLE IF EXISTS {TABLE}",
    ]


def timescale_ddl(retention_days: int) -> list[str]:
    """The same rollup as a continuous aggregate. The refresh policy has no start offset: its
    first run materialises every stored hour (the backfill; a refresh cannot run inside the
    migration's transaction), later runs only the hours new rows invalidated."""
    return [
        f"CREATE MATERIALIZED VIEW {TABLE} WITH (timescaledb.continuous) AS "
        f"SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, host, component, level, "
        f"count(*) AS lines FROM {SOURCE} GROUP BY 1, 2, 3, 4 WITH NO DATA",
        f"SELECT add_continuous_aggregate_policy('{TABLE}', start_offset => NULL, "
        "end_offset => NULL, schedule_interval => INTERVAL '5 minutes')",
        f"ALTER MATERIALIZED VIEW {TABLE} SET (timescaledb.materialized_only = false)",
        f"SELECT add_retention_policy('{TABLE}', INTERVAL '{retention_days} days')",
    ]


def timescale_teardown_ddl() -> list[str]:
    return [f"DROP MATERIALIZED VIEW IF EXISTS {TABLE}"]


def prune(conn: Connection, backend: str, retention_days: int) -> int:
    """Apply the logs' retention to the rollup: hours wholly older than it go (TimescaleDB:
    its retention policy is set instead). Returns rollup rows deleted."""
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": TABLE}).scalar() is None:
        return 0  # a schema from before the rollup
    if backend == "timescaledb":
        conn.execute(text(f"SELECT remove_retention_policy('{TABLE}', if_exists => true)"))
        conn.execute(
            text(f"SELECT add_retention_policy('{TABLE}', INTERVAL '{retention_days} days')")
        )
        return 0
    result = conn.execute(
        text(
            f"DELETE FROM {TABLE} "
            "WHERE bucket + INTERVAL '1 hour' <= now() - make_interval(days => :d)"
        ),
        {"d": retention_days},
    )
    return result.rowcount
