"""Scheduling: Slurm capacity and the real-time share, jobs by partition, state and pending
reason, stuck jobs, the work queue and its catch-up forecast (``portal sched``).

The Slurm panels read what the scheduler component pushes each poll; ``or vector(0)`` shows 0
rather than "No data" before its first push (BatchSchedulerDown covers a silent scheduler).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from portal.grafana.kit import Sql, dashboard, prom, stat, table, timeseries

STATES = "('queued'), ('submitted'), ('running'), ('done'), ('failed'), ('cancelled')"


def build() -> Dashboard:
    return (
        dashboard(
            "obs-scheduling",
            "Scheduling",
            "Batch work on Slurm: real-time share, batch capacity, queue, stuck jobs, forecast.",
        )
        .with_row(Row("Capacity"))
        .with_panel(
            stat(
                "Batch CPUs free",
                "none",
                prom('sum(obs_sched_cpus{share="batch_free"}) or vector(0)'),
            )
        )
        .with_panel(
            stat(
                "Real-time CPUs held",
                "none",
                prom('sum(obs_sched_cpus{share="realtime"}) or vector(0)'),
            )
        )
        .with_panel(
            stat(
                "Nodes drained or down",
                "none",
                prom('sum(obs_sched_nodes{state=~"drained|down"}) or vector(0)'),
            )
        )
        .with_panel(
            stat("Stuck jobs", "none", prom("count(obs_sched_job_stuck_seconds) or vector(0)"))
        )
        .with_row(Row("Jobs"))
        .with_panel(
            timeseries(
                "Slurm jobs by partition and state",
                "none",
                prom(
                    "sum by (partition, state) (obs_sched_jobs) or vector(0)",
                    "{{partition}} {{state}}",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Pending jobs by Slurm's reason",
                "none",
                prom("sum by (reason) (obs_sched_jobs_pending_reason) or vector(0)", "{{reason}}"),
            )
        )
        .with_row(Row("Backlog"))
        .with_panel(
            stat(
                "Backlog (pointing-days)",
                "none",
                prom("max(obs_sched_backlog_pointing_days) or vector(0)"),
            )
        )
        .with_panel(
            stat(
                "Catch-up forecast (-1: unknown)",
                "h",
                prom("max(obs_sched_catchup_hours) or vector(-1)"),
            )
        )
        .with_panel(
            table(
                "Work items by state (database)",
                Sql(
                    f"""SELECT s.state, count(w.id) AS items
                    FROM (VALUES {STATES}) AS s(state)
                    LEFT JOIN sched_work w ON w.state = s.state
                    GROUP BY s.state ORDER BY s.state"""
                ),
            )
        )
        .with_panel(
            timeseries(
                "Work finished per hour (database)",
                "none",
                Sql(
                    """SELECT $__timeGroupAlias(g.hour, 1h), count(w.id) AS value
                    FROM generate_series(date_trunc('hour', $__timeFrom()::timestamptz),
                                         $__timeTo()::timestamptz, interval '1 hour') AS g(hour)
                    LEFT JOIN sched_work w ON w.state = 'done'
                      AND w.finished_at >= g.hour AND w.finished_at < g.hour + interval '1 hour'
                    GROUP BY 1 ORDER BY 1"""
                ),
            )
        )
    )


DASHBOARDS = {"scheduling": build}
