"""Real-time pipeline: L1 data rate per beam and host, packet loss, DM adjustments, lag.

The data rate, packet loss, lag and RFI read the 5-minute series of
prometheus/rules/dashboards.yml, not the raw per-beam ones: a month-wide view stays fast. Each
point of the gauges is the worst 5 minutes of its interval, so a spike at 3 a.m. still shows at
any zoom; the data rate's is the mean rate over its interval, as rate() would give.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from portal.grafana.kit import Sql, dashboard, prom, prom_variable, table, timeseries

SEL = 'host=~"$host", beam=~"$beam"'
BY = "sum by (host, beam)"
RULE_INTERVAL = "5m"  # the evaluation interval of the obsportal-dashboards rule group
BEAM_POINTS = 720  # 30 days in hourly points


def recorded(expr: str, legend: str) -> prometheus.Dataquery:
    """A target on a recorded series: no point finer than the rules evaluate (Min interval),
    so ``$__interval`` always holds at least one recorded sample."""
    return prom(expr, legend).interval(RULE_INTERVAL)


def per_beam(title: str, unit: str, target: prometheus.Dataquery) -> Any:
    """A time series of one line per beam: at most ``BEAM_POINTS`` points a line, as a panel is
    a few hundred pixels wide; 32 beams over 30 days at Grafana's default interval were 46,000
    points to encode and move, 1,024 beams 32 times more."""
    return timeseries(title, unit, target).max_data_points(BEAM_POINTS)


def worst(series: str, by: str = "") -> str:
    """The largest recorded value of ``series`` within each point's interval, per host and
    beam as recorded, or aggregated ``by`` (Prometheus aggregates step by step: only if needed)."""
    expr = f"max_over_time({series}{{{SEL}}}[$__interval])"
    return f"max by ({by}) ({expr})" if by else expr


def build() -> Dashboard:
    return (
        dashboard("obs-realtime", "Real-time pipeline", "L1 beams: data rate, loss, DM, lag.")
        .with_variable(prom_variable("host", "host", "obs_l1_received_bytes_total", multi=True))
        .with_variable(prom_variable("beam", "beam", "obs_l1_received_bytes_total", multi=True))
        .with_row(Row("Data flow"))
        .with_panel(
            per_beam(
                "L1 data rate per beam and host",
                "bps",
                recorded(
                    f"avg_over_time(host_beam:obs_l1_received_bits:rate5m{{{SEL}}}[$__interval])",
                    "{{host}} beam {{beam}}",
                ),
            )
        )
        .with_panel(
            per_beam(
                "Packet loss",
                "percentunit",
                recorded(
                    worst("host_beam:obs_l1_packet_loss:ratio_rate5m"), "{{host}} beam {{beam}}"
                ),
            )
        )
        .with_panel(
            per_beam(
                "Lag behind real time",
                "s",
                recorded(worst("host_beam:obs_l1_lag_seconds:max5m"), "{{host}} beam {{beam}}"),
            )
        )
        .with_panel(
            per_beam(
                "RFI masked",
                "percentunit",
                recorded(worst("host_beam:obs_l1_rfi_masked_ratio:max5m", "beam"), "beam {{beam}}"),
            )
        )
        .with_row(Row("Beam adjustments and pointings"))
        .with_panel(
            timeseries(
                "DM adjustments per hour",
                "none",
                prom(
                    "sum by (beam) "
                    f"(rate(obs_l1_dm_adjustments_total{{{SEL}}}[$__rate_interval])) * 3600",
                    "beam {{beam}}",
                ),
            )
        )
        .with_panel(
            timeseries(
                "DM adjustment events (database)",
                "none",
                Sql(
                    """SELECT $__timeGroupAlias(time, $__interval), 'beam ' || beam AS metric,
                    count(*) AS value FROM beam_events
                    WHERE kind = 'dm_adjust' AND $__timeFilter(time)
                    GROUP BY 1, 2 ORDER BY 1"""
                ),
            )
        )
        .with_panel(
            table(
                "Latest pointings",
                Sql(
                    """SELECT time, beam, ra_deg, dec_deg, duration_s, rfi_fraction,
                    data_bytes, max_dm, n_candidates FROM pointings
                    WHERE $__timeFilter(time) ORDER BY time DESC LIMIT 100""",
                    "table",
                ),
                span=24,
            )
        )
    )


DASHBOARDS = {"realtime": build}
