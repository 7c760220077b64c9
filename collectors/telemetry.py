"""The component telemetry library: one small API for every pipeline component.

Metrics are prometheus_client metrics (scraped through ``serve`` or pushed by batch jobs with
``push``) and the same samples are mirrored to ``metric_samples`` through the durable write
path, so Prometheus and PostgreSQL see identical values. Names are checked at the call site.

    tel = Telemetry("l1", host="cn01")
    rx = tel.counter("obs_l1_received_bytes_total", "L1 data received", ["beam"])
    rx.labels(beam=7).inc(8192)
    tel.serve(9200)              # long-running: Prometheus scrapes it
    tel.start_mirroring(10)      # and PostgreSQL gets the same samples every 10 s
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.error import URLError

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    push_to_gateway,
)
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.core import Metric as PromMetric
from prometheus_client.registry import Collector

from collectors import naming
from collectors.naming import TelemetryError
from portal import settings
from portal.db import writer as writer_mod
from portal.db.writer import WritePath
from portal.errors import BackendUnavailable
from portal.events import bus as events
from portal.redact import redact_url
from portal.settings import Settings
from portal.stack.configs import hostport

log = logging.getLogger(__name__)
disable_created_metrics()  # ``*_created`` series double every counter and nobody queries them

__all__ = ["Telemetry", "TelemetryError", "Metric"]

BASE_LABELS = ("host", "component")
MetricRow = tuple[datetime, str, str, str, dict[str, str], float]

#: One prometheus_client metric per (registry, name), shared by the components on that registry.
_families: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, tuple[str, tuple, Any]]] = (
    weakref.WeakKeyDictionary()
)
_families_lock = threading.Lock()


class Child:
    """One labelled series of a metric; the value checks happen here, at the call site."""

    def __init__(self, metric: Metric, inner: Any) -> None:
        self._metric, self._inner = metric, inner

    def inc(self, amount: float = 1.0) -> None:
        kind = self._metric.kind
        if kind == "histogram":
            raise TelemetryError(f"histogram {self._metric.name!r} has no inc(); use observe()")
        self._inner.inc(naming.check_value(self._metric.name, amount, kind == "counter"))

    def dec(self, amount: float = 1.0) -> None:
        self._require("gauge", "dec")
        self._inner.dec(naming.check_value(self._metric.name, amount))

    def set(self, value: float) -> None:
        self._require("gauge", "set")
        self._inner.set(naming.check_value(self._metric.name, value))

    def observe(self, value: float) -> None:
        self._require("histogram", "observe")
        self._inner.observe(naming.check_value(self._metric.name, value))

    def _require(self, kind: str, method: str) -> None:
        if self._metric.kind != kind:
            raise TelemetryError(f"{self._metric.kind} {self._metric.name!r} has no {method}()")


class Metric:
    """A declared metric; ``labels(beam=3)`` picks a series, or call ``inc``/``set`` directly."""

    def __init__(self, tel: Telemetry, kind: str, name: str, labels: tuple[str, ...], inner: Any):
        self.tel, self.kind, self.name, self.label_names, self._inner = (
            tel,
            kind,
            name,
            labels,
            inner,
        )

    def labels(self, **values: object) -> Child:
        checked = naming.check_labels(self.name, self.label_names, values)
        return Child(self, self._inner.labels(self.tel.host, self.tel.component, *checked))

    def _only(self) -> Child:
        if self.label_names:
            raise TelemetryError(
                f"metric {self.name!r} has labels ({', '.join(self.label_names)}): "
                "call .labels(...) first"
            )
        return self.labels()

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only().dec(amount)

    def set(self, value: float) -> None:
        self._only().set(value)

    def observe(self, value: float) -> None:
        self._only().observe(value)


class Telemetry:
    """Metrics, events and logs of one component on one host.

    Components of one process may share a ``registry`` (one ``/metrics`` port per host) and a
    ``writer`` (one database write path); each mirrors only its own series.
    """

    def __init__(
        self,
        component: str,
        *,
        host: str | None = None,
        cfg: Settings | None = None,
        registry: CollectorRegistry | None = None,
        writer: WritePath | None = None,
    ) -> None:
        self.cfg = cfg or settings.get()
        self.host = naming.check_label_value("", "host", host or self.cfg.host_name)
        self.component = naming.check_label_value("", "component", component)
        self.registry = registry if registry is not None else CollectorRegistry()
        self._writer, self._own_writer = writer, writer is None
        self._metrics: dict[str, Metric] = {}
        self._servers: list[Any] = []
        self._mirror_stop = threading.Event()
        self._mirror_thread: threading.Thread | None = None
        self._handlers: list[TelemetryLogHandler] = []

    # -- declaring metrics ------------------------------------------------------------------
    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Metric:
        return self._declare("counter", name, help, labels)

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Metric:
        return self._declare("gauge", name, help, labels)

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Metric:
        return self._declare("histogram", name, help, labels, buckets=tuple(buckets))

    def _declare(self, kind: str, name: str, help: str, labels: Sequence[str], **kw: Any) -> Metric:
        naming.check_metric_name(name, kind)
        if isinstance(labels, str):
            raise TelemetryError(f"metric {name!r}: labels must be a list of names, not a string")
        names = naming.check_label_names(name, labels)
        if not help or not isinstance(help, str):
            raise TelemetryError(f"metric {name!r}: help text must be a non-empty string")
        with _families_lock:
            family = _families.setdefault(self.registry, {})
            if name in family:
                have_kind, have_labels, inner = family[name]
                if (have_kind, have_labels) != (kind, names):
                    raise TelemetryError(
                        f"metric {name!r} is already declared as {have_kind} with labels "
                        f"({', '.join(have_labels)}); cannot redeclare as {kind} with "
                        f"({', '.join(names)})"
                    )
            else:
                cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[kind]
                inner = cls(name, help, [*BASE_LABELS, *names], registry=self.registry, **kw)
                family[name] = (kind, names, inner)
        metric = Metric(self, kind, name, names, inner)
        self._metrics[name] = metric
        return metric

    # -- database mirror --------------------------------------------------------------------
    def rows(self, now: datetime | None = None, extra: Mapping[str, str] | None = None) -> list:
        """This component's current samples as ``metric_samples`` rows."""
        stamp = now or datetime.now(UTC)
        out: list[MetricRow] = []
        for metric in self._metrics.values():
            for family in metric._inner.collect():
                for s in family.samples:
                    if s.name.endswith("_created"):
                        continue
                    if s.labels.get("host") != self.host:
                        continue
                    if s.labels.get("component") != self.component:
                        continue
                    rest = {k: v for k, v in s.labels.items() if k not in BASE_LABELS}
                    rest.update(extra or {})
                    out.append((stamp, self.host, self.component, s.name, rest, float(s.value)))
        return out

    @property
    def writer(self) -> WritePath:
        if self._writer is None:
            self._writer = WritePath.from_settings(
                self.cfg,
                "metric_samples",
                name=f"telemetry-{self.host}-{self.component}",
                durable=True,
            )
        return self._writer

    def mirror(self, now: datetime | None = None, extra: Mapping[str, str] | None = None) -> int:
        """Write the current samples to the database (durably spooled first); returns rows."""
        rows = self.rows(now, extra)
        self.writer.write_many(rows)
        return len(rows)

    def start_mirroring(self, seconds: float = 10.0) -> None:
        """Mirror every ``seconds`` in a daemon thread, like a scrape at the same interval."""
        if self._mirror_thread is not None:
            return

        def loop() -> None:
            while not self._mirror_stop.wait(seconds):
                try:
                    self.mirror()
                except Exception:  # a mirror failure must never take the component down
                    log.exception("telemetry %s/%s: mirror failed", self.host, self.component)

        self._mirror_thread = threading.Thread(target=loop, name="telemetry-mirror", daemon=True)
        self._mirror_thread.start()

    # -- exposition -------------------------------------------------------------------------
    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` for Prometheus (long-running components); returns the port."""
        if port:
            settings.check_port_free("port", addr, port)
        if self._own_writer and self.registry not in _with_writer_metrics:
            self.registry.register(WriterMetrics())  # spool size/age: alertable per component
            _with_writer_metrics.add(self.registry)
        server, _thread = _start_http_server(port, addr=addr, registry=self.registry)
        self._servers.append(server)
        return int(server.server_port)

    def push(self, job: str, extra: Mapping[str, str] | None = None) -> None:
        """Push this registry to the Pushgateway (batch jobs, when they finish)."""
        naming.check_label_value("", "job", job)
        try:
            push_to_gateway(
                hostport(self.cfg.pushgateway_url),
                job=job,
                registry=self.registry,
                grouping_key={"host": self.host, "component": self.component},
                timeout=10,
            )
        except (URLError, OSError) as exc:
            raise BackendUnavailable(
                f"Pushgateway at {redact_url(self.cfg.pushgateway_url)} does not answer ({exc})"
            ) from None
        self.mirror(extra={"job": job, **(extra or {})})

    def job_finished(self, job: str, duration_seconds: float) -> None:
        """Record a successful batch run (Pushgateway convention) and push it."""
        self.gauge(
            "obs_batch_last_success_timestamp_seconds", "When the batch job last succeeded"
        ).set(time.time())
        self.gauge("obs_batch_duration_seconds", "How long the last batch run took").set(
            duration_seconds
        )
        self.push(job)

    # -- events and logs --------------------------------------------------------------------
    def event(self, topic: str, payload: dict[str, Any] | None = None) -> int:
        """Publish an event through the portal's event bus; returns its id."""
        body = {"host": self.host, "component": self.component, **(payload or {})}
        return events.publish(
            self.cfg.database_url, topic, body, source=f"{self.host}/{self.component}"
        )

    def log_handler(self, level: int = logging.NOTSET) -> logging.Handler:
        """A ``logging.Handler`` whose records land in the portal's log store."""
        handler = TelemetryLogHandler(self, level)
        self._handlers.append(handler)
        return handler

    def close(self) -> None:
        """Stop serving and mirroring; flush what is pending to the database or the spool."""
        self._mirror_stop.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for handler in self._handlers:
            handler.close()
        if self._writer is not None and self._own_writer:
            self._writer.close()


_with_writer_metrics: weakref.WeakSet[CollectorRegistry] = weakref.WeakSet()


class WriterMetrics(Collector):
    """The write path's ``portal_*`` metrics (process-wide) on a component's own registry."""

    def describe(self) -> Iterator[PromMetric]:
        return iter(())

    def collect(self) -> Iterator[PromMetric]:
        for metric in (
            writer_mod.ROWS,
            writer_mod.SPOOL_BYTES,
            writer_mod.SPOOL_AGE,
            writer_mod.QUEUE_ROWS,
            writer_mod.LAST_OK,
        ):
            yield from metric.collect()


class TelemetryLogHandler(logging.Handler):
    """Log records -> ``log_lines`` through ``portal.logs.store.log_writer`` (spooled on outage)."""

    def __init__(self, tel: Telemetry, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        import uuid

        from portal.logs.store import log_writer

        self.tel = tel
        self.source = f"handler:{tel.host}/{tel.component}/{uuid.uuid4().hex[:12]}"
        # not durable: an fsync per log record would cost more than the record is worth
        self.writer = log_writer(tel.cfg, name=f"logs-{tel.host}-{tel.component}", durable=False)
        self._seq = 0
        self._seq_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            with self._seq_lock:
                self._seq += 1
                seq = self._seq
            row = (
                datetime.fromtimestamp(record.created, UTC),
                self.tel.host,
                self.tel.component,
                record.levelname,
                message,
                {"logger": record.name},
                self.source,
                seq,
            )
            self.writer.write(row)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.writer.flush(10.0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        super().close()
