"""Metrics scale-out: Prometheus ``remote_write`` into a real VictoriaMetrics, read back through
the portal's Prometheus client and the Grafana dashboards' PromQL.

The local stack's own generated Prometheus config (with ``PORTAL_PROMETHEUS_REMOTE_WRITE_URL``)
scrapes itself every second and forwards to VictoriaMetrics; VictoriaMetrics runs with
``-search.latencyOffset=1s`` so samples are visible to "now" queries at once (the default
hides the last 30 s). Prometheus is stopped before VictoriaMetrics: with its remote-write
target gone it takes about a minute to exit.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest

from portal.grafana import harness, provisioning
from portal.metrics.client import Prometheus
from portal.readiness import http_ready
from portal.settings import Settings
from portal.stack import configs, process
from tests.conftest import free_port, shared_tmpdir

VM = shutil.which("victoria-metrics")
pytestmark = pytest.mark.skipif(VM is None, reason="victoria-metrics is not installed")


class Pair(NamedTuple):
    cfg: Settings  # the stack's settings, remote-writing to ``vm_url``
    prom_url: str
    vm_url: str


@pytest.fixture(scope="module")
def remote_written(cfg: Settings) -> Iterator[Pair]:
    tmp: Path = shared_tmpdir("portal-vm-")
    vm_port, prom_port = free_port(), free_port()
    vm_url, prom_url = f"http://127.0.0.1:{vm_port}", f"http://127.0.0.1:{prom_port}"
    mine = cfg.replace(
        prometheus_url=prom_url,
        # not the session's Pushgateway: other tests push hosts named to break naive queries
        pushgateway_url=f"http://127.0.0.1:{free_port()}",
        prometheus_remote_write_url=f"{vm_url}/api/v1/write",
        data_dir=tmp / "var",
    )
    assert "remote_write" not in configs.prometheus_config(cfg)  # off unless set
    config = configs.prometheus_config(mine, scrape_interval="1s")
    assert config["remote_write"] == [
        {"url": f"{vm_url}/api/v1/write", "queue_config": {"batch_send_deadline": "5s"}}
    ]
    config["remote_write"][0]["queue_config"]["batch_send_deadline"] = "1s"  # faster test
    configs.write(tmp / "prometheus.yml", config)
    vm_pid = process.spawn(
        [
            str(VM),
            f"-httpListenAddr=127.0.0.1:{vm_port}",
            f"-storageDataPath={tmp / 'vm'}",
            "-retentionPeriod=1",
            "-search.latencyOffset=1s",
        ],
        tmp / "vm.log",
    )
    prom_pid = None
    try:
        assert process.wait_until(lambda: http_ready(vm_url), 30), process.tail(tmp / "vm.log")
        prom_pid = process.spawn(
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp / "prometheus.log",
        )
        assert process.wait_until(lambda: http_ready(prom_url), 30), process.tail(
            tmp / "prometheus.log"
        )
        yield Pair(mine, prom_url, vm_url)
    finally:
        if prom_pid is not None:
            process.stop(prom_pid, timeout=20)  # first: it waits for its remote-write target
        process.stop(vm_pid, timeout=20)
        assert not process.alive(vm_pid)
        shutil.rmtree(tmp, ignore_errors=True)


def test_samples_arrive_through_remote_write_and_the_portal_client_reads_them(
    remote_written: Pair,
) -> None:
    vm = Prometheus(remote_written.vm_url)
    assert vm.healthy()

    def arrived() -> bool:
        return bool(vm.query('up{job="prometheus"}'))

    assert process.wait_until(arrived, 60)
    series = vm.query('up{job="prometheus"}')
    # the external label Prometheus adds to what it forwards: these came by remote_write
    assert series[0]["metric"]["portal"] == "obsportal"
    assert float(series[0]["value"][1]) == 1.0

    def ranged() -> bool:
        now = datetime.now(UTC)
        frame = vm.range_frame(
            "sum by (job) (rate(prometheus_http_requests_total[1m]))",
            now - timedelta(minutes=5),
            now,
            step=1,
        )
        return list(frame.columns) == ["job", "time", "value"] and len(frame) > 0

    assert process.wait_until(ranged, 60)  # rate() needs two samples: a second scrape
    names = {s["metric"]["job"] for s in vm.query('up{portal="obsportal"}')}
    assert "prometheus" in names


def test_every_grafana_promql_panel_query_runs_against_victoriametrics(
    remote_written: Pair, database_url: str
) -> None:
    dashboards = provisioning.registered(remote_written.cfg)
    end = datetime.now(UTC)
    report = harness.run_dashboards(
        dashboards, Prometheus(remote_written.vm_url), database_url, end - timedelta(hours=1), end
    )
    promql = [r for r in report.results if r.target.kind == "promql"]
    assert promql, "the dashboards have PromQL panels"
    failed = [r.line() for r in promql if r.error]
    assert failed == []
