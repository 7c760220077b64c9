"""Storage fill and forecast: per product and mount, with the linear 24 h forecast."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from portal.grafana.kit import Sql, dashboard, prom, stat, table, timeseries

USED = "sum by (host, mount) (obs_storage_used_bytes)"
CAP = "max by (host, mount) (obs_storage_capacity_bytes)"


def build() -> Dashboard:
    return (
        dashboard("obs-storage", "Storage fill and forecast", "Fill per product and forecast.")
        .with_row(Row("Fill"))
        .with_panel(stat("Storage used", "percentunit", prom(f"sum({USED}) / sum({CAP})"), span=8))
        .with_panel(
            stat(
                "Days until the first mount is full",
                "d",
                prom(
                    f"min(({CAP} - {USED}) / "
                    "(sum by (host, mount) (deriv(obs_storage_used_bytes[6h])) > 0)) / 86400"
                    " or vector(365)"
                ),
                span=8,
            )
        )
        .with_panel(
            stat(
                "Host filesystems over 90%",
                "none",
                prom(
                    "count(max by (host, mount) (obs_host_filesystem_used_bytes)"
                    " / max by (host, mount) (obs_host_filesystem_size_bytes) > 0.9)"
                    " or vector(0)"
                ),
                span=8,
            )
        )
        .with_panel(
            timeseries(
                "Used by product",
                "bytes",
                prom("sum by (product) (obs_storage_used_bytes)", "{{product}}"),
            )
        )
        .with_panel(
            timeseries(
                "Fill per mount",
                "percentunit",
                prom(f"{USED} / {CAP}", "{{host}}:{{mount}}"),
            )
        )
        .with_row(Row("Forecast"))
        .with_panel(
            timeseries(
                "Forecast fill in 24 h (storage)",
                "percentunit",
                prom(
                    "sum by (host, mount) (predict_linear(obs_storage_used_bytes[6h], 86400))"
                    f" / {CAP}",
                    "{{host}}:{{mount}}",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Forecast fill in 24 h (host filesystems)",
                "percentunit",
                prom(
                    "max by (host, mount) "
                    "(predict_linear(obs_host_filesystem_used_bytes[6h], 86400))"
                    " / max by (host, mount) (obs_host_filesystem_size_bytes)",
                    "{{host}}:{{mount}}",
                ),
            )
        )
        .with_row(Row("Data products"))
        .with_panel(
            table(
                "Products by kind",
                Sql(
                    """SELECT kind, count(*) AS products, sum(size_bytes) AS bytes,
                    max(created_at) AS newest FROM data_products WHERE state = 'complete'
                    GROUP BY kind ORDER BY bytes DESC""",
                    "table",
                ),
            )
        )
        .with_panel(
            table(
                "Replicas by site and state",
                Sql(
                    """SELECT site, state, count(*) AS replicas,
                    coalesce(sum(size_bytes), 0) AS bytes FROM replicas
                    GROUP BY site, state ORDER BY site, state""",
                    "table",
                ),
            )
        )
        .with_row(Row("Replication"))
        .with_panel(
            table(
                "Replication rules",
                Sql(
                    """SELECT name, kind, site, state, done, total,
                    round(100.0 * done / nullif(total, 0), 1) AS percent,
                    progress_at AS last_progress, last_error
                    FROM replication_rules ORDER BY state DESC, name""",
                    "table",
                ),
            )
        )
        .with_panel(
            table(
                "Transfer requests by site and state",
                Sql(
                    """SELECT site, state, count(*) AS requests,
                    sum(bytes_total) AS bytes, sum(bytes_done) AS bytes_done,
                    max(attempts) AS most_attempts,
                    max(last_error) FILTER (WHERE state = 'FAILED') AS a_last_error
                    FROM transfer_requests GROUP BY site, state ORDER BY site, state""",
                    "table",
                ),
            )
        )
    )


DASHBOARDS = {"storage": build}
