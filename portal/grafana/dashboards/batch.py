"""Batch backlog: Hhat stacks pending and processed, workers, job freshness."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from portal.grafana.kit import Sql, dashboard, prom, stat, timeseries


def build() -> Dashboard:
    return (
        dashboard("obs-batch", "Batch backlog", "Hhat stacks (daily, monthly, cumulative).")
        .with_row(Row("Backlog"))
        .with_panel(stat("Stacks pending", "none", prom("sum(obs_hhat_stacks_pending)")))
        .with_panel(stat("Workers busy", "none", prom("sum(obs_hhat_workers_busy)")))
        .with_panel(
            stat(
                "Oldest batch success",
                "s",
                prom("max(time() - obs_batch_last_success_timestamp_seconds)"),
            )
        )
        .with_panel(
            stat(
                "Stacks processed (range)",
                "none",
                prom("sum(increase(obs_hhat_stacks_processed_total[$__range]))"),
            )
        )
        .with_panel(
            timeseries(
                "Stacks pending",
                "none",
                prom("sum by (stack) (obs_hhat_stacks_pending)", "{{stack}}"),
            )
        )
        .with_panel(
            timeseries(
                "Stacks processed per hour",
                "none",
                prom(
                    "sum by (stack) "
                    "(rate(obs_hhat_stacks_processed_total[$__rate_interval])) * 3600",
                    "{{stack}}",
                ),
            )
        )
        .with_row(Row("Workers and jobs"))
        .with_panel(
            timeseries(
                "Workers busy", "none", prom("sum by (host) (obs_hhat_workers_busy)", "{{host}}")
            )
        )
        .with_panel(
            timeseries(
                "Batch job duration",
                "s",
                prom("max by (job) (obs_batch_duration_seconds)", "{{job}}"),
            )
        )
        .with_panel(
            timeseries(
                "Candidates per hour",
                "none",
                prom(
                    "sum by (beam) (rate(obs_candidates_total[$__rate_interval])) * 3600",
                    "beam {{beam}}",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Hhat products written (database)",
                "none",
                Sql(
                    """SELECT $__timeGroupAlias(created_at, $__interval), kind AS metric,
                    count(*) AS value FROM data_products
                    WHERE kind LIKE 'hhat%' AND $__timeFilter(created_at)
                    GROUP BY 1, 2 ORDER BY 1"""
                ),
            )
        )
    )


DASHBOARDS = {"batch": build}
