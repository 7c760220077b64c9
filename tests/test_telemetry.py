"""The component telemetry library: call-site validation, DB mirror, events, logs, Pushgateway."""

from __future__ import annotations

import logging
import uuid

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collectors.telemetry import Telemetry, TelemetryError
from portal.db import engine as db_engine
from portal.errors import PortalError
from portal.events import bus as events
from portal.metrics.client import Prometheus
from portal.settings import Settings
from portal.stack.process import wait_until


def _tel(cfg: Settings, component: str = "l1") -> Telemetry:
    return Telemetry(component, host=f"t-{uuid.uuid4().hex[:6]}", cfg=cfg)


@pytest.mark.parametrize(
    ("kind", "name", "labels", "fragment"),
    [
        ("counter", "obs_l1_received_bytes", ["beam"], "must end with '_total'"),
        ("gauge", "obs_lag_total", [], "must not end with '_total'"),
        ("gauge", "l1_lag_seconds", [], "must start with 'obs_'"),
        ("gauge", "obs_l1-lag", [], "'obs_l1-lag' is malformed"),
        ("gauge", "obs_L1_lag", [], "must be lower case"),
        ("gauge", "obs_l1_lag_seconds", ["be am"], "label name 'be am' is malformed"),
        ("gauge", "obs_l1_lag_seconds", ["host"], "'host' is reserved"),
        ("gauge", "obs_l1_lag_seconds", ["beam", "beam"], "'beam' given twice"),
        ("gauge", "obs_l1_lag_seconds", "beam", "must be a list of names"),
        ("histogram", "obs_l1_block_seconds_count", [], "must not end with _bucket"),
    ],
)
def test_bad_declarations_name_the_offending_thing(
    cfg: Settings, kind: str, name: str, labels: list[str], fragment: str
) -> None:
    tel = _tel(cfg)
    with pytest.raises(TelemetryError) as err:
        getattr(tel, kind)(name, "help", labels)
    assert fragment in str(err.value)
    assert isinstance(err.value, PortalError) and isinstance(err.value, ValueError)


def test_bad_label_values_and_values_fail_at_the_call_site(cfg: Settings) -> None:
    tel = _tel(cfg)
    rx = tel.counter("obs_l1_received_bytes_total", "L1 data", ["beam"])
    lag = tel.gauge("obs_l1_lag_seconds", "lag", ["beam"])
    cases = [
        (lambda: rx.labels(beam="a\nb"), "beam='a\\nb' contains control characters"),
        (lambda: rx.labels(beam=""), "label 'beam' has an empty value"),
        (lambda: rx.labels(beam=1.5), "must be a string or an integer"),
        (lambda: rx.labels(beam="x" * 201), "201 characters"),
        (lambda: rx.labels(bem=3), "missing beam; unknown bem"),
        (lambda: rx.labels(beam=3).inc(-1), "increment -1 is negative"),
        (lambda: rx.labels(beam=3).set(1), "has no set()"),
        (lambda: rx.inc(), "call .labels(...) first"),
        (lambda: lag.labels(beam=3).set(float("nan")), "is not finite"),
        (lambda: lag.labels(beam=3).set("1"), "is not a number"),
        (lambda: tel.gauge("obs_l1_received_bytes_total", "x"), "must not end with '_total'"),
        (
            lambda: (
                tel.counter("obs_l1_lag_total", "x", ["beam"])
                and tel.gauge("obs_l1_lag_seconds", "x", ["node"])
            ),
            "already declared as gauge",
        ),
    ]
    for call, fragment in cases:
        with pytest.raises(TelemetryError) as err:
            call()
        assert fragment in str(err.value), (fragment, str(err.value))
    rx.labels(beam=3).inc(10)  # the good call still works after the bad ones
    assert b'obs_l1_received_bytes_total{beam="3"' in generate_latest(tel.registry)


def test_samples_are_mirrored_to_the_database(cfg: Settings, database_url: str) -> None:
    tel = _tel(cfg, "hhat-worker")
    tel.counter("obs_hhat_stacks_processed_total", "done", ["stack"]).labels(stack="daily").inc(3)
    tel.gauge("obs_hhat_workers_busy", "busy").set(2)
    tel.histogram("obs_hhat_stack_seconds", "t", buckets=(1, 10)).observe(4)
    assert tel.mirror() == 1 + 1 + 5  # histogram: 3 buckets (+Inf), _count, _sum
    assert tel.writer.flush(30)
    with psycopg.connect(db_engine.libpq_dsn(database_url)) as conn:
        rows = conn.execute(
            "SELECT name, component, labels, value FROM metric_samples WHERE host = %s "
            "ORDER BY name, labels::text",
            (tel.host,),
        ).fetchall()
    tel.close()
    got = {(r[0], r[2].get("stack") or r[2].get("le")): r[3] for r in rows}
    assert got[("obs_hhat_stacks_processed_total", "daily")] == 3.0
    assert got[("obs_hhat_workers_busy", None)] == 2.0
    assert got[("obs_hhat_stack_seconds_bucket", "10.0")] == 1.0
    assert got[("obs_hhat_stack_seconds_bucket", "1.0")] == 0.0
    assert {r[1] for r in rows} == {"hhat-worker"}


def test_event_and_log_handler_reach_the_portal(cfg: Settings, database_url: str) -> None:
    tel = _tel(cfg, "l1")
    event_id = tel.event("pipeline.beam_restarted", {"beam": 12})
    [ev] = events.history(database_url, ["pipeline.beam_restarted"], since=event_id - 1)
    assert ev.payload == {"beam": 12, "host": tel.host, "component": "l1"}
    assert ev.source == f"{tel.host}/l1"
    with pytest.raises(PortalError, match="topic"):
        tel.event("bad topic")

    logger = logging.getLogger(f"test.telemetry.{tel.host}")
    logger.propagate = False
    handler = tel.log_handler()
    logger.addHandler(handler)
    logger.warning("beam %d lost lock", 12)
    handler.flush()
    tel.close()
    with psycopg.connect(db_engine.libpq_dsn(database_url)) as conn:
        rows = conn.execute(
            "SELECT level, message, component, seq FROM log_lines WHERE host = %s", (tel.host,)
        ).fetchall()
    assert rows == [("WARNING", "beam 12 lost lock", "l1", 1)]


def test_batch_job_push_reaches_pushgateway_and_prometheus(stack: Settings) -> None:
    tel = Telemetry(
        "hhat-daily-stack",
        host=f"b-{uuid.uuid4().hex[:6]}",
        cfg=stack,
        registry=CollectorRegistry(),
    )
    tel.job_finished("hhat-daily-stack", 123.5)
    prom = Prometheus(stack.prometheus_url)
    query = f'obs_batch_duration_seconds{{job="hhat-daily-stack", host="{tel.host}"}}'
    # the Pushgateway is scraped every 10 s: poll with a deadline
    assert wait_until(lambda: prom.scalar(query) is not None, 60, interval=0.5), query
    assert prom.scalar(query) == 123.5
    tel.close()


def test_push_to_a_dead_pushgateway_is_one_clear_error(cfg: Settings) -> None:
    from portal.errors import BackendUnavailable

    dead = cfg.replace(pushgateway_url="http://127.0.0.1:1")
    tel = Telemetry("job", host="h", cfg=dead)
    with pytest.raises(BackendUnavailable, match="Pushgateway at http://127.0.0.1:1"):
        tel.push("nightly")
    tel.close()


def test_served_metrics_include_the_spool_gauges(cfg: Settings, database_url: str) -> None:
    import httpx

    tel = _tel(cfg, "l1")
    tel.gauge("obs_l1_lag_seconds", "lag", ["beam"]).labels(beam=1).set(0.5)
    port = tel.serve(0, addr="127.0.0.1")
    tel.mirror()
    assert tel.writer.flush(30)
    writer = f"telemetry-{tel.host}-l1"

    def exposed() -> str:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    try:
        assert wait_until(lambda: f'portal_spool_bytes{{writer="{writer}"}} 0.0' in exposed(), 10)
        text = exposed()
        assert f'portal_write_rows_total{{outcome="written",writer="{writer}"}} 1.0' in text
        assert f'obs_l1_lag_seconds{{beam="1",component="l1",host="{tel.host}"}} 0.5' in text
    finally:
        tel.close()
