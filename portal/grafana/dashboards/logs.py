"""Logs: the PostgreSQL log table (always there) and a Loki variant (when Loki runs)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import (
    CustomVariable,
    Dashboard,
    QueryVariable,
    TextBoxVariable,
)
from grafana_foundation_sdk.models.dashboard import VariableOption, VariableRefresh

from portal.grafana.kit import (
    LOKI,
    Sql,
    dashboard,
    logql,
    logs,
    sql_variable,
    table,
    timeseries,
)

FILTER = """$__timeFilter(time) AND host IN ($host) AND level IN ($level)
    AND message ILIKE '%' || '$search' || '%'"""

# The hourly rollup (``portal.db.log_counts``) gives the raw count of the range's whole hours
# when no text search applies and the time groups are whole hours; the ragged edges of the
# range, and everything otherwise, are counted from log_lines. Each condition is a constant
# once Grafana has substituted it: PostgreSQL plans only the branch it leaves on.
NO_SEARCH = "'$search' = ''"
WHOLE_HOUR_GROUPS = "$__interval_ms % 3600000 = 0"
FIRST_HOUR = (
    "date_trunc('hour', $__timeFrom()::timestamptz - INTERVAL '1 microsecond', 'UTC') "
    "+ INTERVAL '1 hour'"
)
LAST_HOUR = "date_trunc('hour', $__timeTo()::timestamptz, 'UTC')"


def rollup_hours(column: str) -> str:
    """``column`` within the range's whole hours (the span the rollup counts)."""
    return f"{column} >= {FIRST_HOUR} AND {column} < {LAST_HOUR}"


def _level() -> CustomVariable:
    return (
        CustomVariable("level")
        .label("Level")
        .values("DEBUG,INFO,WARNING,ERROR,CRITICAL")
        .multi(True)
        .include_all(True)
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


def _search() -> TextBoxVariable:
    return TextBoxVariable("search").label("Search").default_value("")


def build() -> Dashboard:
    return (
        dashboard("obs-logs", "Logs", "Log lines from the PostgreSQL log table.")
        .with_variable(sql_variable("host", "SELECT name FROM hosts ORDER BY name", multi=True))
        .with_variable(_level())
        .with_variable(_search())
        .with_panel(
            timeseries(
                "Lines per level",
                "none",
                Sql(
                    f"""SELECT "time", metric, sum(value)::bigint AS value FROM (
                    SELECT $__timeGroupAlias(bucket, $__interval), level AS metric,
                    sum(lines) AS value FROM log_counts_hourly
                    WHERE {NO_SEARCH} AND {WHOLE_HOUR_GROUPS} AND {rollup_hours("bucket")}
                    AND host IN ($host) AND level IN ($level) GROUP BY 1, 2
                    UNION ALL
                    SELECT $__timeGroupAlias(time, $__interval), level, count(*)
                    FROM log_lines WHERE {FILTER}
                    AND NOT ({NO_SEARCH} AND {WHOLE_HOUR_GROUPS} AND {rollup_hours("time")})
                    GROUP BY 1, 2) counted GROUP BY 1, 2 ORDER BY 1"""
                ),
                span=16,
            ).max_data_points(720)  # 30 days in hourly points: the rollup's groups
        )
        .with_panel(
            table(
                "Noisiest components",
                Sql(
                    f"""SELECT host, component, sum(lines)::bigint AS lines,
                    sum(errors)::bigint AS errors FROM (
                    SELECT host, component, sum(lines) AS lines, coalesce(sum(lines)
                    FILTER (WHERE level IN ('ERROR', 'CRITICAL')), 0) AS errors
                    FROM log_counts_hourly WHERE {NO_SEARCH} AND {rollup_hours("bucket")}
                    AND host IN ($host) AND level IN ($level) GROUP BY 1, 2
                    UNION ALL
                    SELECT host, component, count(*),
                    count(*) FILTER (WHERE level IN ('ERROR', 'CRITICAL'))
                    FROM log_lines WHERE {FILTER}
                    AND NOT ({NO_SEARCH} AND {rollup_hours("time")})
                    GROUP BY 1, 2) counted
                    GROUP BY host, component ORDER BY lines DESC, host, component LIMIT 20""",
                    "table",
                ),
                span=8,
            )
        )
        .with_panel(
            logs(
                "Log lines",
                Sql(
                    f"""SELECT time, level, host, component, message FROM log_lines
                    WHERE {FILTER} ORDER BY time DESC LIMIT 1000""",
                    "table",
                ),
            )
        )
    )


def build_loki() -> Dashboard:
    host = (
        QueryVariable("host")
        .label("Host")
        .datasource(LOKI)
        .query("label_values(host)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )
    sel = '{host=~"$host", level=~"$level"}'
    return (
        dashboard("obs-logs-loki", "Logs (Loki)", "The same log lines from Loki, when configured.")
        .with_variable(host)
        .with_variable(_level())
        .with_variable(_search())
        .with_panel(
            timeseries(
                "Lines per level",
                "none",
                logql(f"sum by (level) (count_over_time({sel} [$__auto]))", "{{level}}"),
                span=24,
            )
        )
        .with_panel(logs("Log lines", logql(f'{sel} |= "$search"')))
    )


DASHBOARDS = {"logs": build, "logs-loki": build_loki}
