"""Rolling updates, rollback and power-outage recovery against real sshd "hosts", a real
Prometheus scraping their components, and the session's PostgreSQL (``tests/ops_fixtures.py``,
``tests/ops_fleet_fixtures.py``); the Operations page's callbacks with real role tokens."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from portal.auth.identity import Identity
from portal.db.engine import get_engine
from portal.inventory import registry
from portal.ops import rolling, runs
from portal.ops.tables import ops_steps
from portal.ops.worker import Worker
from portal.settings import Settings
from portal.stack import process
from portal.stack.configs import targets_dir
from tests import ops_fixtures
from tests import ops_fleet_fixtures as more
from tests.ops_fixtures import Fleet, Monitoring

OPERATOR = Identity("tester", "user", "operator", "127.0.0.1", "req-fleet")
TAG = uuid.uuid4().hex[:5]
ROLL = [f"rl{i}x{TAG}" for i in range(1, 5)]
#: one host per recovery tier, given in an order that is not the tier order
TIER_HOSTS = {
    f"hd{TAG}": ("head", None),
    f"bt{TAG}": ("compute", "batch"),
    f"cn{TAG}": ("compute", "real-time"),
    f"st{TAG}": ("storage", "real-time"),
    f"db{TAG}": ("database", None),
}
TIER_OF = {
    f"db{TAG}": "database",
    f"st{TAG}": "storage",
    f"cn{TAG}": "real-time",
    f"bt{TAG}": "batch",
    f"hd{TAG}": "portal",
}


@pytest.fixture(scope="module")
def fleet(cfg: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    found = ops_fixtures.start_fleet(tmp_path_factory.mktemp("fleet"), [*ROLL, *TIER_HOSTS])
    try:
        more.install(found)
        ops_fixtures.register(found, cfg)
        for name in ROLL:
            port = found.add_unit(name, "l1")
            registry.add_component(cfg, name, "l1", kind="real-time", metrics_port=port)
        for name, (role, kind) in TIER_HOSTS.items():
            h = found.host(name)
            registry.add_host(cfg, name, role, "127.0.0.1", h.collector_port, {"ssh_port": h.port})
            if kind is not None:
                port = found.add_unit(name, "svc1")
                registry.add_component(cfg, name, "svc1", kind=kind, metrics_port=port)
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def mon(
    cfg: Settings, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Monitoring]:
    found = ops_fixtures.start_monitoring(tmp_path_factory.mktemp("mon"), targets_dir(cfg))
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def ops_env(fleet: Fleet, mon: Monitoring) -> dict[str, str]:
    return {
        **fleet.env,
        "PORTAL_OPS_GATE_SECONDS": "10",
        "PORTAL_PROMETHEUS_URL": mon.prom_url,
        "PORTAL_ALERTMANAGER_URL": mon.am_url,
    }


@pytest.fixture(scope="module")
def ops_cfg(cfg: Settings, fleet: Fleet, mon: Monitoring) -> Settings:
    return fleet.settings(cfg, PORTAL_OPS_GATE_SECONDS="10").replace(
        prometheus_url=mon.prom_url, alertmanager_url=mon.am_url
    )


@contextmanager
def worker(cfg: Settings) -> Iterator[Worker]:
    """The real ops worker in a thread of this process, stopped (runs ended) on exit."""
    found = Worker(cfg, threads=2)
    thread = threading.Thread(target=found.serve, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.stop.set()
        thread.join(timeout=120)


def finished(cfg: Settings, run_id: int, timeout: float = 120) -> runs.Run:
    assert process.wait_until(lambda: runs.get(cfg, run_id).finished, timeout, 0.2), runs.get(
        cfg, run_id
    )
    return runs.get(cfg, run_id)


# -- rolling update and rollback ----------------------------------------------------------------
def test_plan_batches_of_one_n_or_a_percentage() -> None:
    hosts = [f"h{i}" for i in range(8)]
    assert rolling.plan(hosts, "") == [[h] for h in hosts]
    assert rolling.plan(hosts, "3") == [hosts[:3], hosts[3:6], hosts[6:]]
    assert rolling.plan(hosts, "25%") == [hosts[:2], hosts[2:4], hosts[4:6], hosts[6:]]
    assert rolling.plan(hosts, "100%") == [hosts]
    with pytest.raises(rolling.PortalError, match="1% to 100%"):
        rolling.plan(hosts, "0%")


def test_rolling_update_stops_at_the_failing_host_and_rollback_restores(
    ops_cfg: Settings, fleet: Fleet
) -> None:
    more.bad_version(fleet, ROLL[2], "2.0")
    pids = {h: fleet.unit_pid(h, "l1") for h in ROLL}
    params = {"component": "l1", "version": "2.0", "batch": "1", "settle": "1s"}
    dry = runs.request(ops_cfg, OPERATOR, "update", ROLL, params, "release 2.0", dry_run=True)
    commands = runs.get(ops_cfg, dry).result["commands"]  # type: ignore[index]
    assert f"{fleet.root / 'fleet-update'} {ROLL[3]} l1 2.0" in commands[ROLL[3]]
    assert all(more.version(fleet, h, "l1") == "1" for h in ROLL)  # the dry run ran nothing
    with worker(ops_cfg):
        run_id = runs.request(ops_cfg, OPERATOR, "update", ROLL, params, "release 2.0")
        run = finished(ops_cfg, run_id)
        assert run.state == "failed", run
        assert run.error and ROLL[2] in run.error and f"not touched: {ROLL[3]}" in run.error
        assert [more.version(fleet, h, "l1") for h in ROLL] == ["2.0", "2.0", "2.0", "1"]
        assert not any(h == ROLL[3] for h in (s.host for s in run.steps))
        sshd_port = f"via {fleet.host(ROLL[3]).port}"
        assert not [c for c in fleet.calls(ROLL[3]) if c.endswith(sshd_port)]  # no SSH call
        assert fleet.unit_pid(ROLL[3], "l1") == pids[ROLL[3]]
        assert run.progress["previous"] == {h: "1" for h in ROLL[:3]}
        assert sorted(run.progress["done"]) == sorted(ROLL[:2])
        gates = [s for s in run.steps if s.name == "health gate"]
        assert [(s.host, s.state) for s in gates] == [
            (ROLL[0], "succeeded"),
            (ROLL[1], "succeeded"),
            (ROLL[2], "failed"),
        ]
        labels = {c.host: c.labels for c in registry.list_components(ops_cfg) if c.host in ROLL}
        assert labels[ROLL[0]]["version"] == "2.0" and "version" not in labels[ROLL[3]]

        assert rolling.rollback_hosts(ops_cfg, run_id) == ROLL[:3]
        with pytest.raises(rolling.PortalError, match="did not change"):
            runs.request(ops_cfg, OPERATOR, "rollback", ROLL, {"run": str(run_id)}, "undo")
        back = runs.request(
            ops_cfg, OPERATOR, "rollback", ROLL[:3], {"run": str(run_id), "settle": "1s"}, "undo"
        )
        done = finished(ops_cfg, back)
    assert done.state == "succeeded", done
    assert [more.version(fleet, h, "l1") for h in ROLL] == ["1", "1", "1", "1"]
    assert all(fleet.unit_pid(h, "l1") for h in ROLL)
    assert done.result and done.result["before"][ROLL[2]]["version"] == "2.0"
    labels = {c.host: c.labels for c in registry.list_components(ops_cfg) if c.host in ROLL}
    assert [labels[h].get("version") for h in ROLL[:3]] == ["1", "1", "1"]


# -- power-outage recovery -----------------------------------------------------------------------
def _steps(cfg: Settings, run_id: int) -> list[sa.Row]:
    with get_engine(cfg.database_url).connect() as conn:
        return list(
            conn.execute(
                sa.select(ops_steps).where(ops_steps.c.run_id == run_id).order_by(ops_steps.c.seq)
            )
        )


def test_recovery_killed_mid_way_resumes_and_finishes_in_tier_order(
    ops_cfg: Settings, ops_env: dict[str, str], fleet: Fleet, tmp_path: object
) -> None:
    from pathlib import Path

    hosts = list(TIER_HOSTS)
    storage = f"st{TAG}"
    more.power_cut(fleet, hosts)
    more.wake_delay(fleet, storage, 3)
    log = Path(str(tmp_path)) / "worker.log"
    first = more.worker_process(ops_env, log)
    try:
        run_id = runs.request(ops_cfg, OPERATOR, "recover", hosts, {}, "power back after cut")

        def storage_waking() -> bool:
            return any(
                s.host == storage and s.name == "wake" and s.state == "running"
                for s in _steps(ops_cfg, run_id)
            )

        assert process.wait_until(storage_waking, 60, 0.1), log.read_text()
        more.kill9(first)
    finally:
        if first.poll() is None:
            more.kill9(first)
    (fleet.state(storage) / "wake_delay").unlink()
    second = more.worker_process(ops_env, log)
    try:
        run = finished(ops_cfg, run_id)
    finally:
        process.stop(second.pid, timeout=30)
    assert run.state == "succeeded", (run, log.read_text())
    assert run.attempts == 2
    steps = _steps(ops_cfg, run_id)
    assert any(s.name == "resume" for s in steps)
    interrupted = [s for s in steps if s.host == storage and s.state == "failed"]
    assert interrupted and "interrupted" in interrupted[0].detail
    # the database tier was done before the kill and not done again
    assert [s.name for s in steps if s.host == f"db{TAG}"] == ["wake", "ssh back", "health"]
    # tier order: every succeeded step of a tier comes before any of the next tier
    done = [s for s in steps if s.host and s.state == "succeeded"]
    order = ["database", "storage", "real-time", "batch", "portal"]
    ranks = [order.index(TIER_OF[s.host]) for s in done]
    assert ranks == sorted(ranks), [(s.seq, s.host, s.name) for s in done]
    report = run.result["after"]  # type: ignore[index]
    assert [t["tier"] for t in report["tiers"]] == order
    assert all(t["back"] == t["hosts"] and t["seconds"] is not None for t in report["tiers"])
    assert report["not_back"] == {}
    for name, (_role, kind) in TIER_HOSTS.items():
        assert fleet.unit_pid(name, "collector"), name
        if kind is not None:
            assert fleet.unit_pid(name, "svc1"), name
