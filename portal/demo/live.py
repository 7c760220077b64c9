"""``portal demo run``: the simulated cluster live, through the real telemetry library.

Each simulated host serves its own ``/metrics`` port and is registered in the inventory, so
Prometheus scrapes it as a separate target; samples are mirrored to ``metric_samples``,
pointings and beam events go through the write path, batch jobs push to the Pushgateway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as PromMetric
from prometheus_client.registry import Collector

from collectors import hoststats
from collectors.telemetry import Metric, Telemetry
from portal.data.producer import BEAM_EVENT_COLUMNS, POINTING_COLUMNS, Producer
from portal.db.writer import WritePath
from portal.demo import faults, model, sinks
from portal.demo.logs import DemoLogs
from portal.errors import PortalError
from portal.inventory import registry as inventory
from portal.settings import Settings

log = logging.getLogger(__name__)

HELP = {
    "obs_l1_received_bytes_total": "L1 intensity data received",
    "obs_l1_packets_received_total": "L1 packets received",
    "obs_l1_packets_lost_total": "L1 packets lost",
    "obs_l1_rfi_masked_ratio": "Fraction of the band masked as RFI",
    "obs_l1_lag_seconds": "How far behind real time the beam's processing is",
    "obs_l1_dm_adjustments_total": "Beam DM adjustments",
    "obs_pointings_total": "Pointings recorded",
    "obs_hhat_stacks_pending": "Backlog of Hhat stacks to check",
    "obs_hhat_stacks_processed_total": "Hhat stacks processed",
    "obs_hhat_workers_busy": "Busy batch workers",
    "obs_candidates_total": "Candidates found",
    "obs_storage_used_bytes": "Bytes used per data product",
    "obs_storage_capacity_bytes": "Capacity of the mount",
}


class SimHostCollector(Collector):
    """A simulated host's host-collector series (no component label), read from the model.

    Like a real host collector it also reports its component's process: ``obs_process_up``
    is 1 while the simulated component runs (``process_up``; 0 when it is stopped).
    """

    def __init__(self, sim: model.Sim, host: str, component: str = "") -> None:
        self.sim, self.host, self.component = sim, host, component
        self.process_up = 1.0

    def describe(self) -> Iterator[PromMetric]:
        return iter(())

    def series(self) -> list[tuple[str, dict[str, str], float]]:
        return [
            (name, dict(labels), value)
            for (host, comp, name, labels), value in list(self.sim.values.items())
            if host == self.host and comp == ""
        ]

    def collect(self) -> Iterator[PromMetric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for name, labels, value in self.series():
            fam = families.get(name)
            if fam is None:
                cls = (
                    CounterMetricFamily if self.sim.kinds[name] == "counter" else GaugeMetricFamily
                )
                help_ = hoststats.HELP.get(name) or model.HELP[name]
                fam = families[name] = cls(name, help_, labels=["host", *labels])
            fam.add_metric([self.host, *labels.values()], value)
        yield from families.values()
        if self.component:
            up = GaugeMetricFamily(
                "obs_process_up", hoststats.HELP["obs_process_up"], labels=["host", "component"]
            )
            up.add_metric([self.host, self.component], self.process_up)
            yield up

    def process_rows(self, now: datetime) -> list[tuple]:
        """``obs_process_up`` as a ``metric_samples`` row, as the host collector writes it."""
        if not self.component:
            return []
        return [(now, self.host, self.component, "obs_process_up", {}, self.process_up)]


class Live:
    """The simulator wired to telemetry objects, one registry and port per simulated host."""

    def __init__(
        self,
        cfg: Settings,
        hosts: list[model.SimHost],
        speed: float = 1.0,
        base_port: int = 9200,
        bind: str = "127.0.0.1",
        pointings_per_day: int = model.POINTINGS_PER_DAY,
        mirror_seconds: float = 10.0,
    ) -> None:
        self.cfg, self.speed, self.mirror_seconds = cfg, speed, mirror_seconds
        self.t0 = datetime.now(UTC)
        self.sim = model.Sim(self.t0, hosts, pointings_per_day, seed=int(time.time()))
        self.metrics_writer = self._writer("metric_samples", "demo-metrics", durable=True)
        self.pointings = self._writer("pointings", "demo-pointings", POINTING_COLUMNS)
        self.beam_events = self._writer("beam_events", "demo-beam-events", BEAM_EVENT_COLUMNS)
        self.products = Producer(cfg, name="demo")  # the pipeline's producer API (write path)
        self.logs = DemoLogs(cfg.data_dir / "log" / "demo", self.sim.beam_host)
        self.tels: dict[tuple[str, str], Telemetry] = {}
        self.metrics: dict[tuple[str, str, str], Metric] = {}
        self.last: dict[model.SeriesKey, float] = {}
        self.ports: dict[str, int] = {}
        self.host_series: list[SimHostCollector] = []
        self.fault_file = faults.FaultFile(faults.path(cfg.data_dir))  # `portal demo fault`
        for i, h in enumerate(hosts):
            registry = CollectorRegistry()
            self.host_series.append(SimHostCollector(self.sim, h.name, h.component))
            registry.register(self.host_series[-1])
            tel = Telemetry(  # one shared write path for the whole demo
                h.component,
                host=h.name,
                cfg=cfg,
                registry=registry,
                writer=self.metrics_writer,
            )
            self.tels[(h.name, h.component)] = tel
            self.ports[h.name] = tel.serve(base_port + i if base_port else 0, addr=bind)
            faults.gate_scrapes(tel, lambda host=h.name: self.sim.host_down(host))
        self.apply()

    def _writer(
        self, table: str, name: str, columns: tuple[str, ...] | None = None, durable: bool = False
    ) -> WritePath:
        return WritePath.from_settings(self.cfg, table, columns, name=name, durable=durable)

    def register(self, address: str = "127.0.0.1") -> None:
        """Put every simulated host and its component in the inventory (idempotent).

        No state is passed: a host an operator declared in maintenance stays so.
        """
        for h in self.sim.hosts:
            inventory.add_host(
                self.cfg,
                h.name,
                role=h.role,
                address=address,
                collector_port=self.ports[h.name],
                labels={"simulated": True},
            )
            inventory.add_component(self.cfg, h.name, h.component, kind=h.kind)

    def set_process_up(self, host: str, up: bool) -> None:
        """Mark the simulated component on ``host`` as running or stopped (obs_process_up)."""
        for hs in self.host_series:
            if hs.host == host:
                hs.process_up = 1.0 if up else 0.0

    def to_real(self, t: datetime) -> datetime:
        return self.t0 + (t - self.t0) / self.speed

    def _metric(self, host: str, comp: str, name: str, labels: tuple[str, ...]) -> Metric:
        key = (host, comp, name)
        metric = self.metrics.get(key)
        if metric is None:
            tel = self.tels[(host, comp)]
            kind = self.sim.kinds[name]
            declare = tel.counter if kind == "counter" else tel.gauge
            help_ = HELP.get(name) or model.HELP[name]
            metric = self.metrics[key] = declare(name, help_, labels)
        return metric

    def apply(self) -> None:
        """Copy the model's values into the telemetry metrics (counters by their increase)."""
        for key, value in self.sim.values.items():
            host, comp, name, labels = key
            if not comp:
                continue  # host-level series: served by SimHostCollector
            metric = self._metric(host, comp, name, tuple(k for k, _ in labels))
            child = metric.labels(**dict(labels))
            if self.sim.kinds[name] == "counter":
                delta = value - self.last.get(key, 0.0)
                if delta > 0:
                    child.inc(delta)
            else:
                child.set(value)
            self.last[key] = value

    def step(self, real_seconds: float) -> model.StepOutput:
        self.fault_file.apply(self)  # faults injected by `portal demo fault`
        out = self.sim.step(real_seconds * self.speed, self.to_real)
        self.apply()
        self.pointings.write_many(out.pointings)
        self.beam_events.write_many(out.beam_events)
        self.register_products(out.products)
        sinks.publish_all(self.cfg.database_url, out.events, source="demo")
        self.logs.step(out)
        for job, duration in out.jobs:
            self.push_job(job, duration / self.speed)
        return out

    def register_products(self, products: list[dict[str, Any]]) -> None:
        """Through the producer API: spooled while the database is away, never duplicated."""
        try:
            self.products.register_products(products)
        except PortalError as exc:
            log.warning("demo: %d data products refused (%s)", len(products), exc)

    def push_job(self, job: str, duration: float) -> None:
        tel = Telemetry(
            job,
            host="batch01",
            cfg=self.cfg,
            registry=CollectorRegistry(),
            writer=self.metrics_writer,
        )
        try:
            tel.job_finished(job, duration)
        except Exception as exc:
            log.warning("demo: push of %s failed (%s)", job, str(exc).splitlines()[0])

    def mirror(self) -> int:
        now = datetime.now(UTC)
        rows = [row for tel in self.tels.values() for row in tel.rows(now)]
        for hs in self.host_series:
            rows.extend((now, hs.host, "", n, labels, v) for n, labels, v in hs.series())
            rows.extend(hs.process_rows(now))
        self.metrics_writer.write_many(rows)
        return len(rows)

    def run(self, stop: threading.Event, tick: float = 1.0) -> None:
        """Step every ``tick`` seconds and mirror every ``mirror_seconds`` until ``stop``."""
        last = time.monotonic()
        next_mirror = last
        while not stop.wait(max(0.0, tick - (time.monotonic() - last))):
            now = time.monotonic()
            self.step(now - last)
            last = now
            if now >= next_mirror:
                self.mirror()
                next_mirror = now + self.mirror_seconds

    def close(self) -> None:
        for tel in self.tels.values():
            tel.close()
        for w in (self.metrics_writer, self.pointings, self.beam_events):
            w.close(timeout=10)
        self.products.close(timeout=10)
        self.logs.close()
