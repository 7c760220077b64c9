"""Operations framework and actions against real sshd "hosts", a real Prometheus scraping them,
a real Alertmanager and the session's PostgreSQL (see ``tests/ops_fixtures.py``)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from portal.auth.identity import Identity
from portal.inventory import registry
from portal.ops import runs
from portal.ops.worker import Worker
from portal.settings import Settings
from portal.stack import process
from portal.stack.configs import targets_dir
from tests import ops_fixtures
from tests.ops_fixtures import Fleet, Monitoring

OPERATOR = Identity("tester", "user", "operator", "127.0.0.1", "req-ops")
ADMIN = Identity("boss", "user", "admin", "127.0.0.1", "req-ops")
VIEWER = Identity("watcher", "user", "viewer", "127.0.0.1", "req-ops")
TAG = uuid.uuid4().hex[:5]
NAMES = [f"opc{i}x{TAG}" for i in range(1, 4)]
#: an alert per component target of the fleet: what maintenance must silence
RULE = {
    "alert": "OpsTestComponentSeen",
    "expr": f'up{{job="collectors", host=~"opc.x{TAG}"}} >= 0',
    "labels": {"severity": "warning"},
}


@pytest.fixture(scope="module")
def fleet(cfg: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    found = ops_fixtures.start_fleet(tmp_path_factory.mktemp("fleet"), NAMES, cfg)
    try:
        for name in NAMES:
            port = found.add_unit(name, "l1")
            registry.add_component(cfg, name, "l1", kind="batch", metrics_port=port)
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def mon(cfg: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    found = ops_fixtures.start_monitoring(tmp_path_factory.mktemp("mon"), targets_dir(cfg), [RULE])
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def ops_cfg(cfg: Settings, fleet: Fleet, mon: Monitoring) -> Settings:
    return fleet.settings(cfg).replace(prometheus_url=mon.prom_url, alertmanager_url=mon.am_url)


@pytest.fixture(scope="module")
def worker(ops_cfg: Settings) -> Iterator[Worker]:
    """The real ops worker, in a thread of this process."""
    found = Worker(ops_cfg, threads=4)
    thread = threading.Thread(target=found.serve, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.stop.set()
        thread.join(timeout=60)


def finished(cfg: Settings, run_id: int, timeout: float = 60) -> runs.Run:
    assert process.wait_until(lambda: runs.get(cfg, run_id).finished, timeout), runs.get(
        cfg, run_id
    )
    return runs.get(cfg, run_id)


def test_restart_brings_the_component_back(ops_cfg: Settings, fleet: Fleet, worker: Worker) -> None:
    host = NAMES[0]
    before = fleet.unit_pid(host, "l1")
    run_id = runs.request(ops_cfg, OPERATOR, "restart", [host], {"component": "l1"}, "stuck")
    run = finished(ops_cfg, run_id)
    assert run.state == "succeeded", run
    after = fleet.unit_pid(host, "l1")
    assert after is not None and after != before
    assert [s.name for s in run.steps] == ["status before", "restart", "health gate"]
    assert all(s.state == "succeeded" for s in run.steps)
    assert any(f"restart l1 via {fleet.host(host).port}" in c for c in fleet.calls(host))
    assert run.result and run.result["before"][host] == {"l1": "active"}


def test_dry_run_lists_commands_and_runs_nothing(ops_cfg: Settings, fleet: Fleet) -> None:
    host = NAMES[1]
    calls = len(fleet.calls(host))
    run_id = runs.request(
        ops_cfg, OPERATOR, "restart", [host], {"component": "l1"}, "check", dry_run=True
    )
    run = runs.get(ops_cfg, run_id)
    assert run.state == "succeeded" and run.dry_run
    line = f"{fleet.svc} restart {host} l1"
    assert run.result and line in run.result["commands"][host]
    assert len(fleet.calls(host)) == calls
