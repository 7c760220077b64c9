"""Slurm and scheduler metrics for Prometheus (pushed to the Pushgateway each poll), and the
backlog forecast: when the backlog catches up at the measured throughput."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Gauge, generate_latest, push_to_gateway

from portal.db.engine import get_engine
from portal.sched.scheduler import Step
from portal.sched.tables import work
from portal.settings import Settings

JOB = "obs-sched"


@dataclass(frozen=True)
class Forecast:
    """Backlog and throughput over the window; ``hours`` None when nothing finished yet."""

    open_items: int
    open_pointing_days: float
    done_per_hour: float
    pointing_days_per_hour: float
    hours: float | None
    window_hours: float

    def line(self) -> str:
        if not self.open_items:
            return "no backlog"
        if self.hours is None:
            return (
                f"{self.open_items} items ({self.open_pointing_days:g} pointing-days) open; "
                f"nothing finished in the last hour, no forecast yet"
            )
        return (
            f"{self.open_items} items ({self.open_pointing_days:g} pointing-days) open; at "
            f"{self.done_per_hour:.1f} items/h ({self.pointing_days_per_hour:.2f} "
            f"pointing-days/h) the backlog catches up in {_span(self.hours)}"
        )


def _span(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def forecast(
    cfg: Settings, window: timedelta = timedelta(hours=1), now: datetime | None = None
) -> Forecast:
    """Open items and pointing-days, divided by the throughput measured over ``window`` (or
    since the first item finished in it, at least a minute: a young queue is not diluted)."""
    now = now or datetime.now(UTC)
    open_states = ("queued", "submitted", "running")
    recent = sa.and_(work.c.state == "done", work.c.finished_at >= now - window)
    query = sa.select(
        sa.func.count().filter(work.c.state.in_(open_states)),
        sa.func.coalesce(
            sa.func.sum(work.c.pointing_days).filter(work.c.state.in_(open_states)), 0
        ),
        sa.func.count().filter(recent),
        sa.func.coalesce(sa.func.sum(work.c.pointing_days).filter(recent), 0),
        sa.func.min(work.c.finished_at).filter(recent),
    )
    with get_engine(cfg.database_url).connect() as conn:
        n_open, days_open, n_done, days_done, first = conn.execute(query).one()
    span = min(window, max(now - first, timedelta(minutes=1))) if first else window
    hours = span.total_seconds() / 3600
    rate = n_done / hours
    eta = n_open / rate if rate > 0 else (0.0 if n_open == 0 else None)
    return Forecast(int(n_open), float(days_open), rate, float(days_done) / hours, eta, hours)


def registry(cfg: Settings, step: Step) -> CollectorRegistry:
    """The gauges of one poll: node states, jobs by partition/state, pending reasons, queue
    sizes, stuck jobs with Slurm's reason, the real-time share and the forecast."""
    reg = CollectorRegistry()
    nodes = Gauge("obs_sched_nodes", "Slurm nodes by state", ["state"], registry=reg)
    seen = step.share.nodes if step.share else ()
    for state, n in Counter("drained" if n.drained else n.state for n in seen).items():
        nodes.labels(state).set(n)
    jobs = Gauge(
        "obs_sched_jobs", "Slurm jobs by partition and state", ["partition", "state"], registry=reg
    )
    reasons = Gauge(
        "obs_sched_jobs_pending_reason",
        "Pending Slurm jobs by reason",
        ["partition", "reason"],
        registry=reg,
    )
    active = [j for j in step.jobs if j.active]
    for (part, state), n in Counter((j.partition, j.state) for j in active).items():
        jobs.labels(part, state).set(n)
    for (part, reason), n in Counter(
        (j.partition, j.reason) for j in active if j.state == "PENDING"
    ).items():
        reasons.labels(part, reason).set(n)
    cpus = Gauge("obs_sched_cpus", "Batch and real-time CPUs", ["share"], registry=reg)
    cpus.labels("batch").set(step.batch_cpus)
    cpus.labels("batch_free").set(step.free_cpus)
    cpus.labels("realtime").set(step.realtime_cpus)
    queue = Gauge("obs_sched_work", "Work items by state", ["state"], registry=reg)
    queue.labels("queued").set(step.queued)
    queue.labels("submitted").set(step.pending)
    queue.labels("running").set(step.running)
    Gauge("obs_sched_desired_jobs", "Jobs the scheduler wants in flight", registry=reg).set(
        step.desired
    )
    stuck = Gauge(
        "obs_sched_job_stuck_seconds",
        "Seconds a job has been pending or running beyond its kind's limit",
        ["kind", "work_id", "job_id", "state", "reason"],
        registry=reg,
    )
    for s in step.stuck:
        stuck.labels(s.kind, str(s.work_id), str(s.job_id), s.state, s.reason).set(
            round(s.seconds - s.limit_seconds, 1)
        )
    fc = forecast(cfg)
    Gauge("obs_sched_backlog_pointing_days", "Open work in pointing-days", registry=reg).set(
        fc.open_pointing_days
    )
    Gauge(
        "obs_sched_catchup_hours", "Hours until the backlog catches up (-1: unknown)", registry=reg
    ).set(-1 if fc.hours is None else fc.hours)
    Gauge(
        "obs_sched_last_poll_timestamp_seconds", "When the scheduler last polled", registry=reg
    ).set(step.time.timestamp())
    return reg


def text(cfg: Settings, step: Step) -> str:
    """The Prometheus text exposition of one poll."""
    return generate_latest(registry(cfg, step)).decode()


def push(cfg: Settings, step: Step) -> None:
    """Replace this scheduler's group on the Pushgateway (stale stuck jobs disappear)."""
    url = cfg.pushgateway_url
    if url:
        push_to_gateway(url, job=JOB, registry=registry(cfg, step), timeout=5)
