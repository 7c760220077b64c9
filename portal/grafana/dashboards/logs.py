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
                    f"""SELECT $__timeGroupAlias(time, $__interval), level AS metric,
                    count(*) AS value FROM log_lines WHERE {FILTER}
                    GROUP BY 1, 2 ORDER BY 1"""
                ),
                span=16,
            )
        )
        .with_panel(
            table(
                "Noisiest components",
                Sql(
                    f"""SELECT host, component, count(*) AS lines,
                    count(*) FILTER (WHERE level IN ('ERROR', 'CRITICAL')) AS errors
                    FROM log_lines WHERE {FILTER}
                    GROUP BY host, component ORDER BY lines DESC LIMIT 20""",
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
