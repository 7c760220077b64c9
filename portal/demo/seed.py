"""``portal demo seed --days N``: backfill history quickly, one COPY transaction per day.

The simulation is deterministic (fixed random seed, start at midnight UTC N days ago), and
rows go through the write path's ``copy_rows`` with de-duplication on each table's key, so
running the same seed twice stores every row once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from portal.data.producer import BEAM_EVENT_COLUMNS, POINTING_COLUMNS
from portal.db.engine import connect_raw, get_engine
from portal.db.tables import ENFORCED_KEYS
from portal.db.timeseries import ensure_partitions
from portal.db.writer import copy_rows
from portal.demo import model, sinks
from portal.demo.backfill import OpenMetricsFile, check_prometheus, record_rules
from portal.errors import PortalError
from portal.events import bus as events
from portal.settings import Settings

METRIC_COLUMNS = ("time", "host", "component", "name", "labels", "value")


@dataclass
class SeedResult:
    days: int
    metric_rows: int = 0
    pointings: int = 0
    beam_events: int = 0
    products: int = 0
    blocks: int = 0
    recorded_blocks: int = 0

    def summary(self) -> str:
        return (
            f"seeded {self.days} days: {self.metric_rows} metric samples, {self.pointings} "
            f"pointings, {self.beam_events} beam events, {self.products} data products "
            "(rows already stored were kept once)"
            + (f"; {self.blocks} Prometheus blocks added" if self.blocks else "")
            + (f" ({self.recorded_blocks} of recorded series)" if self.recorded_blocks else "")
        )


def _metric_rows(sim: model.Sim, stamp: datetime, om: OpenMetricsFile | None) -> list[tuple]:
    if om is not None:
        ts = stamp.timestamp()
        for (host, comp, name, labels), value in sim.values.items():
            om.add(name, sim.kinds[name], host, comp, dict(labels), value, ts)
    return [
        (stamp, host, comp, name, json.dumps(dict(labels)), value)
        for (host, comp, name, labels), value in sim.values.items()
    ]


def _job_rows(stamp: datetime, job: str, duration: float) -> list[tuple]:
    labels = json.dumps({"job": job})
    return [
        (
            stamp,
            "batch01",
            job,
            "obs_batch_last_success_timestamp_seconds",
            labels,
            stamp.timestamp(),
        ),
        (stamp, "batch01", job, "obs_batch_duration_seconds", labels, duration),
    ]


def _flush(url: str, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
    if not rows:
        return 0
    with connect_raw(url, autocommit=True) as conn:
        if table not in ENFORCED_KEYS and _overlaps(conn, table, rows):
            with conn.transaction():  # no unique index: de-duplicate on the key (slower)
                copy_rows(conn, table, columns, rows, dedupe=True)
            return len(rows)
        try:  # plain COPY first (fast); a re-run hits the unique key and de-duplicates instead
            with conn.transaction():
                copy_rows(conn, table, columns, rows)
        except psycopg.errors.UniqueViolation:
            with conn.transaction():
                copy_rows(conn, table, columns, rows, dedupe=True)
    return len(rows)


def _overlaps(conn: psycopg.Connection, table: str, rows: list[tuple]) -> bool:
    """Whether any stored row of these hosts falls in the batch's time span (a re-run)."""
    times = [r[0] for r in rows]
    hosts = sorted({r[1] for r in rows})
    found = conn.execute(
        f"SELECT 1 FROM {table} WHERE time BETWEEN %s AND %s AND host = ANY(%s) LIMIT 1",
        (min(times), max(times), hosts),
    ).fetchone()
    return found is not None


def seed(
    cfg: Settings,
    days: int,
    hosts: list[model.SimHost],
    step_seconds: int = 300,
    pointings_per_day: int = model.POINTINGS_PER_DAY,
    on_progress: Callable[[str], None] = lambda _: None,
    prometheus: bool = False,
) -> SeedResult:
    """Simulate ``days`` days up to now in ``step_seconds`` steps and COPY them day by day."""
    if not 1 <= days <= 400:
        raise PortalError(f"--days {days} is out of range (1 to 400)")
    if not 10 <= step_seconds <= 86400:
        raise PortalError(f"--step {step_seconds} is out of range (10 to 86400 seconds)")
    now = datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
    end = start + timedelta(seconds=((now - start).total_seconds() // step_seconds) * step_seconds)
    url = cfg.database_url
    if prometheus:
        check_prometheus(cfg)  # fail before the long part, not after it
    with get_engine(url).begin() as conn:
        for table in ("metric_samples", "pointings", "beam_events", "log_lines"):
            ensure_partitions(conn, table, start.date(), end.date())
    sim = model.Sim(start, hosts, pointings_per_day, seed=7)
    result = SeedResult(days)
    om = OpenMetricsFile() if prometheus else None
    try:
        _run(cfg, sim, end, step_seconds, result, on_progress, om)
        if om is not None:
            on_progress(f"prometheus: building blocks from {om.samples} samples")
            result.blocks = om.to_prometheus(cfg)
            on_progress("prometheus: evaluating the dashboards' recording rules over it")
            result.recorded_blocks, said = record_rules(cfg, start, end)
            on_progress(said)
    finally:
        if om is not None:
            om.close()
    events.publish(url, "demo.seeded", {"days": days, "rows": result.metric_rows}, source="demo")
    return result


def _run(
    cfg: Settings,
    sim: model.Sim,
    end: datetime,
    step_seconds: int,
    result: SeedResult,
    on_progress: Callable[[str], None],
    om: OpenMetricsFile | None,
) -> None:
    """The day-by-day simulate-and-COPY loop."""
    url = cfg.database_url
    metrics: list[tuple] = _metric_rows(sim, sim.now, om)
    pointings: list[tuple] = []
    beam_events: list[tuple] = []
    products: list[dict[str, Any]] = []
    day = sim.now.date()
    step = timedelta(seconds=step_seconds)
    while sim.now < end:
        out = sim.step(step.total_seconds())
        metrics.extend(_metric_rows(sim, sim.now, om))
        for job, duration in out.jobs:
            metrics.extend(_job_rows(sim.now, job, duration))
        pointings.extend(_dumps(p, 9) for p in out.pointings)
        beam_events.extend(_dumps(e, 4) for e in out.beam_events)
        products.extend(out.products)
        if sim.now.date() != day or sim.now >= end:
            result.metric_rows += _flush(url, "metric_samples", METRIC_COLUMNS, metrics)
            result.pointings += _flush(url, "pointings", POINTING_COLUMNS, pointings)
            result.beam_events += _flush(url, "beam_events", BEAM_EVENT_COLUMNS, beam_events)
            with get_engine(url).begin() as conn:
                result.products += sinks.save_products(conn, products)
            on_progress(f"{day}: {len(metrics)} samples, {len(pointings)} pointings")
            metrics, pointings, beam_events, products = [], [], [], []
            day = sim.now.date()


def _dumps(row: tuple, json_index: int) -> tuple:
    """JSON-encode the row's JSONB column for COPY."""
    return (*row[:json_index], json.dumps(row[json_index], default=str), *row[json_index + 1 :])
