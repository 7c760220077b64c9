"""Cluster overview: is everything up, how busy, what fires."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from portal.grafana.kit import Sql, dashboard, prom, stat, table, timeseries


def build() -> Dashboard:
    return (
        dashboard("obs-overview", "Cluster overview", "Hosts, pipeline throughput and alerts.")
        .with_row(Row("Now"))
        .with_panel(stat("Hosts up", "none", prom('sum(up{job="collectors"})')))
        .with_panel(
            stat("Hosts down", "none", prom('count(up{job="collectors"} == 0) or vector(0)'))
        )
        .with_panel(
            stat("Firing alerts", "none", prom('count(ALERTS{alertstate="firing"}) or vector(0)'))
        )
        .with_panel(
            stat(
                "L1 data rate",
                "bps",
                prom("sum(rate(obs_l1_received_bytes_total[$__rate_interval])) * 8"),
            )
        )
        .with_row(Row("Hosts"))
        .with_panel(
            timeseries(
                "CPU busy by host",
                "percentunit",
                prom('avg by (host) (obs_host_cpu_usage_ratio{cpu="total"})', "{{host}}"),
            )
        )
        .with_panel(
            timeseries(
                "Memory used by host",
                "percentunit",
                prom(
                    "sum by (host) (obs_host_memory_used_bytes)"
                    " / sum by (host) (obs_host_memory_total_bytes)",
                    "{{host}}",
                ),
            )
        )
        .with_row(Row("Pipeline"))
        .with_panel(
            timeseries(
                "L1 data rate by host",
                "bps",
                prom(
                    "sum by (host) (rate(obs_l1_received_bytes_total[$__rate_interval])) * 8",
                    "{{host}}",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Hhat stacks pending",
                "none",
                prom("sum by (stack) (obs_hhat_stacks_pending)", "{{stack}}"),
            )
        )
        .with_row(Row("Alerts and inventory"))
        .with_panel(
            table(
                "Recent alert notifications",
                Sql(
                    """SELECT time, payload->>'status' AS status,
                    payload->>'alertname' AS alert, payload->'labels'->>'host' AS host,
                    payload->'annotations'->>'summary' AS summary
                    FROM events WHERE topic = 'alert' AND $__timeFilter(time)
                    ORDER BY id DESC LIMIT 50""",
                    "table",
                ),
            )
        )
        .with_panel(
            table(
                "Hosts",
                Sql(
                    "SELECT name, role, state, address, collector_port FROM hosts ORDER BY name",
                    "table",
                ),
            )
        )
    )


DASHBOARDS = {"overview": build}
