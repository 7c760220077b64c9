"""``portal collect host``: one per host; psutil samples to ``/metrics`` and to PostgreSQL.

A sampling loop takes one psutil snapshot every ``--interval`` seconds; Prometheus scrapes the
latest snapshot and the same samples go to ``metric_samples`` through the durable write path
(spooled with fsync before they count as produced, so neither an outage nor ``kill -9`` loses
them, and replays never duplicate).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
import sqlalchemy as sa
from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collectors import hoststats
from collectors.hoststats import Sample, Watched
from portal import settings
from portal.auth.roles import requires
from portal.db.engine import get_engine
from portal.db.tables import components
from portal.db.writer import WritePath
from portal.settings import Settings

log = logging.getLogger(__name__)
WRITER_NAME = "host-collector"
COMPONENT_REFRESH_SECONDS = 60.0


class HostCollector(Collector):
    """Serves the latest sampling to Prometheus; ``tick`` samples and writes to the database."""

    def __init__(self, cfg: Settings, host: str, writer: WritePath | None) -> None:
        self.cfg, self.host, self.writer = cfg, host, writer
        self.watched: list[Watched] = []
        self._snapshot: list[Sample] = []
        self._lock = threading.Lock()
        self._components_at = 0.0
        self.produced = 0
        hoststats.cpu()  # prime psutil's CPU counters: the first reading is since boot

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no sampling at registration time

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = list(self._snapshot)
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for s in snapshot:
            fam = families.get(s.name)
            if fam is None:
                cls = CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily
                names = ["host", *s.labels]
                fam = families[s.name] = cls(s.name, hoststats.HELP[s.name], labels=names)
            fam.add_metric([self.host, *s.labels.values()], s.value)
        yield from families.values()

    def refresh_components(self) -> None:
        """Which processes to watch: the inventory's components on this host (kept on error)."""
        if time.monotonic() < self._components_at:
            return
        self._components_at = time.monotonic() + COMPONENT_REFRESH_SECONDS
        query = sa.select(components.c.name, components.c.process_match).where(
            components.c.host == self.host, components.c.process_match.is_not(None)
        )
        try:
            with get_engine(self.cfg.database_url).connect() as conn:
                rows = list(conn.execute(query))
        except Exception as exc:  # database away: keep watching what we watched
            log.warning("host collector: cannot read components (%s)", str(exc).splitlines()[0])
            return
        watched = []
        for name, pattern in rows:
            try:
                watched.append(Watched(name, re.compile(pattern)))
            except re.error:
                log.warning("host collector: component %s has a bad process_match regex", name)
        self.watched = watched

    def tick(self) -> tuple[datetime, int]:
        """Sample once; both outputs get this sampling. Returns (sample time, rows)."""
        self.refresh_components()
        samples = hoststats.sample(self.watched)
        now = datetime.now(UTC)
        with self._lock:
            self._snapshot = samples
        rows = [
            (
                now,
                self.host,
                s.labels.get("component", ""),
                s.name,
                {k: v for k, v in s.labels.items() if k != "component"},
                float(s.value),
            )
            for s in samples
        ]
        if self.writer is not None:
            self.writer.write_many(rows)  # durable: on disk when this returns
        self.produced += len(rows)
        return now, len(rows)


def register_self(cfg: Settings, host: str, address: str, port: int, role: str) -> None:
    """Put this host in the inventory when missing, so Prometheus finds it without help."""
    from portal.inventory import registry as inventory

    try:
        if inventory.get_host(cfg, host) is None:
            inventory.add_host(cfg, host, role=role, address=address, collector_port=port)
    except Exception as exc:  # a database outage must not stop the collector from starting
        log.warning("host collector: could not register %s (%s)", host, str(exc).splitlines()[0])


def run(
    cfg: Settings,
    host: str,
    port: int,
    bind: str,
    interval: float,
    register: bool,
    advertise: str,
    count_file: Path | None,
    stop: threading.Event,
    role: str = "compute",
) -> None:
    """Serve and sample until ``stop`` is set; then flush (what is left stays spooled)."""
    settings.check_port_free("PORTAL_COLLECTOR_PORT", bind, port)
    writer = WritePath.from_settings(cfg, "metric_samples", name=WRITER_NAME, durable=True)
    collector = HostCollector(cfg, host, writer)
    REGISTRY.register(collector)
    server, _thread = start_http_server(port, addr=bind, registry=REGISTRY)
    if register:
        register_self(cfg, host, advertise, port, role)
    counts = open(count_file, "a") if count_file else None  # noqa: SIM115 - lives with the loop
    log.info("host collector for %s on %s:%d every %.1fs", host, bind, port, interval)
    try:
        next_at = time.monotonic()
        while not stop.is_set():
            stamp, n = collector.tick()
            if counts is not None:  # what was acknowledged as produced (test hook)
                counts.write(f"{stamp.isoformat()} {n}\n")
                counts.flush()
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))
    finally:
        server.shutdown()
        server.server_close()
        writer.close(timeout=10 if writer.last_error is None else 1)  # all of it is spooled
        if counts is not None:
            counts.close()
        REGISTRY.unregister(collector)


@requires("operator")
@click.command("host")
@click.option("--port", type=int, default=None, help="Port for /metrics [PORTAL_COLLECTOR_PORT].")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--host", "host", default=None, help="Host name in metrics [PORTAL_HOST_NAME].")
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 3600),
    default=10.0,
    show_default=True,
    help="Seconds between samplings (match the Prometheus scrape interval).",
)
@click.option("--register/--no-register", default=True, help="Add this host to the inventory.")
@click.option("--advertise", default="127.0.0.1", show_default=True, help="Address to register.")
@click.option("--role", default="compute", show_default=True, help="Role to register.")
@click.option("--count-file", type=click.Path(path_type=Path), default=None, hidden=True)
def command(
    port: int | None,
    bind: str,
    host: str | None,
    interval: float,
    register: bool,
    advertise: str,
    role: str,
    count_file: Path | None,
) -> None:
    """Sample this host (CPU, memory, disks, network, components) for Prometheus and the DB."""
    cfg = settings.get()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(
        cfg,
        host or cfg.host_name,
        cfg.collector_port if port is None else port,
        bind,
        interval,
        register,
        advertise,
        count_file,
        stop,
        role,
    )
