"""Database health: the write path's own metrics, ingest per table, sizes, connections."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from portal.grafana.dashboards.logs import WHOLE_HOUR_GROUPS, rollup_hours
from portal.grafana.kit import Sql, dashboard, prom, stat, table, timeseries

TIMESERIES = "'metric_samples', 'log_lines', 'pointings', 'beam_events', 'events'"


def build() -> Dashboard:
    return (
        dashboard("obs-database", "Database health", "Write path, ingest, table sizes.")
        .with_row(Row("Write path"))
        .with_panel(
            stat(
                "Longest since a successful write",
                "s",
                prom("max(time() - portal_write_last_success_timestamp_seconds)"),
            )
        )
        .with_panel(stat("Spooled bytes", "bytes", prom("sum(portal_spool_bytes)")))
        .with_panel(stat("Oldest spooled row", "s", prom("max(portal_spool_oldest_age_seconds)")))
        .with_panel(stat("Rows queued", "none", prom("sum(portal_write_queue_rows)")))
        .with_panel(
            timeseries(
                "Rows written per second",
                "rowsps",
                prom(
                    "sum by (outcome) (rate(portal_write_rows_total[$__rate_interval]))",
                    "{{outcome}}",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Spool by host and writer",
                "bytes",
                prom("sum by (host, writer) (portal_spool_bytes)", "{{host}} {{writer}}"),
            )
        )
        .with_row(Row("PostgreSQL"))
        .with_panel(
            timeseries(
                "Metric samples stored (last 24 h)",
                "none",
                Sql(
                    """SELECT $__timeGroupAlias(time, $__interval), 'metric_samples' AS metric,
                    count(*) AS value FROM metric_samples WHERE $__timeFilter(time)
                    GROUP BY 1, 2 ORDER BY 1"""
                ),
            ).time_from("24h")  # counting rows costs O(range): a fixed, recent window
        )
        .with_panel(
            timeseries(
                "Log lines stored (last 24 h)",
                "none",
                Sql(  # whole hours from the hourly rollup, as in the logs dashboard
                    f"""SELECT "time", 'log_lines' AS metric, sum(value)::bigint AS value
                    FROM (SELECT $__timeGroupAlias(bucket, $__interval), sum(lines) AS value
                    FROM log_counts_hourly
                    WHERE {WHOLE_HOUR_GROUPS} AND {rollup_hours("bucket")} GROUP BY 1
                    UNION ALL
                    SELECT $__timeGroupAlias(time, $__interval), count(*) FROM log_lines
                    WHERE $__timeFilter(time)
                    AND NOT ({WHOLE_HOUR_GROUPS} AND {rollup_hours("time")}) GROUP BY 1
                    ) counted GROUP BY 1, 2 ORDER BY 1"""
                ),
            )
            .time_from("24h")
            .interval("1h")  # hourly points: the rollup serves all but the range's edges
        )
        .with_panel(
            table(
                "Table sizes (all partitions)",
                Sql(
                    f"""SELECT t AS "table", sum(pg_total_relation_size(p.relid)) AS bytes,
                    count(*) AS partitions FROM unnest(ARRAY[{TIMESERIES}]) AS t,
                    LATERAL pg_partition_tree(t::regclass) AS p
                    GROUP BY t ORDER BY bytes DESC""",
                    "table",
                ),
            )
        )
        .with_panel(
            table(
                "Connections",
                Sql(
                    """SELECT coalesce(state, 'background') AS state, count(*) AS connections,
                    max(now() - query_start) AS longest FROM pg_stat_activity
                    WHERE datname = current_database() GROUP BY 1 ORDER BY 2 DESC""",
                    "table",
                ),
            )
        )
        .with_panel(
            table(
                "Events by topic",
                Sql(
                    """SELECT topic, count(*) AS events, max(time) AS latest FROM events
                    WHERE $__timeFilter(time) GROUP BY topic ORDER BY events DESC""",
                    "table",
                ),
                span=24,
            )
        )
    )


DASHBOARDS = {"database": build}
