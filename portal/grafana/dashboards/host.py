"""Host detail: one host's resources, processes and recent log lines (``$host`` variable)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from portal.grafana.kit import (
    Sql,
    dashboard,
    prom,
    prom_variable,
    state_timeline,
    table,
    timeseries,
)

H = 'host="$host"'


def build() -> Dashboard:
    return (
        dashboard("obs-host", "Host detail", "Resources, processes and logs of one host.")
        .with_variable(prom_variable("host", "host", "obs_host_load1"))
        .with_row(Row("CPU and memory"))
        .with_panel(
            timeseries(
                "CPU busy per core",
                "percentunit",
                prom(f"obs_host_cpu_usage_ratio{{{H}}}", "{{cpu}}"),
            )
        )
        .with_panel(
            timeseries(
                "Load",
                "none",
                prom(f"obs_host_load1{{{H}}}", "1 min"),
                prom(f"obs_host_load5{{{H}}}", "5 min"),
                prom(f"obs_host_load15{{{H}}}", "15 min"),
            )
        )
        .with_panel(
            timeseries(
                "Memory and swap",
                "bytes",
                prom(f"obs_host_memory_used_bytes{{{H}}}", "memory used"),
                prom(f"obs_host_memory_total_bytes{{{H}}}", "memory total"),
                prom(f"obs_host_swap_used_bytes{{{H}}}", "swap used"),
            )
        )
        .with_panel(
            timeseries(
                "Temperature", "celsius", prom(f"obs_host_temperature_celsius{{{H}}}", "{{sensor}}")
            )
        )
        .with_row(Row("Disks and network"))
        .with_panel(
            timeseries(
                "Filesystem used",
                "percentunit",
                prom(
                    f"max by (mount) (obs_host_filesystem_used_bytes{{{H}}})"
                    f" / max by (mount) (obs_host_filesystem_size_bytes{{{H}}})",
                    "{{mount}}",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Disk I/O",
                "Bps",
                prom(
                    f"rate(obs_host_disk_read_bytes_total{{{H}}}[$__rate_interval])",
                    "read {{device}}",
                ),
                prom(
                    f"rate(obs_host_disk_written_bytes_total{{{H}}}[$__rate_interval])",
                    "written {{device}}",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Network",
                "bps",
                prom(
                    f"rate(obs_host_network_received_bytes_total{{{H}}}[$__rate_interval]) * 8",
                    "in {{interface}}",
                ),
                prom(
                    f"rate(obs_host_network_sent_bytes_total{{{H}}}[$__rate_interval]) * 8",
                    "out {{interface}}",
                ),
            )
        )
        .with_row(Row("Processes"))
        .with_panel(
            state_timeline("Components up", prom(f"obs_process_up{{{H}}}", "{{component}}"))
        )
        .with_panel(
            timeseries(
                "Component CPU",
                "percentunit",
                prom(
                    f"rate(obs_process_cpu_seconds_total{{{H}}}[$__rate_interval])",
                    "{{component}}",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Component memory",
                "bytes",
                prom(f"obs_process_resident_memory_bytes{{{H}}}", "{{component}}"),
            )
        )
        .with_panel(
            timeseries(
                "Component threads", "none", prom(f"obs_process_threads{{{H}}}", "{{component}}")
            )
        )
        .with_panel(
            table(
                "Recent warnings and errors",
                Sql(
                    """SELECT time, component, level, message FROM log_lines
                    WHERE host = '$host' AND level IN ('WARNING', 'ERROR', 'CRITICAL')
                    AND $__timeFilter(time) ORDER BY time DESC LIMIT 100""",
                    "table",
                ),
                span=24,
            )
        )
    )


DASHBOARDS = {"host": build}
