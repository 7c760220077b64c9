"""Operations framework and actions against real sshd "hosts", a real Prometheus scraping them,
a real Alertmanager and the session's PostgreSQL (see ``tests/ops_fixtures.py``)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from portal.alerts import alertmanager
from portal.auth import audit
from portal.auth.identity import Identity
from portal.db.engine import get_engine
from portal.errors import PortalError
from portal.events import bus
from portal.inventory import registry
from portal.ops import drain, maintenance, runs, templates
from portal.ops.executor import Target
from portal.ops.ssh import SshClient, SshConfig
from portal.ops.tables import ops_runs
from portal.ops.worker import Worker
from portal.settings import Settings
from portal.stack import process
from portal.stack.configs import targets_dir
from tests import ops_fixtures
from tests.conftest import portal_cmd, run_portal
from tests.ops_fixtures import Fleet, Monitoring

OPERATOR = Identity("tester", "user", "operator", "127.0.0.1", "req-ops")
ADMIN = Identity("boss", "user", "admin", "127.0.0.1", "req-ops")
VIEWER = Identity("watcher", "user", "viewer", "127.0.0.1", "req-ops")
TAG = uuid.uuid4().hex[:5]
NAMES = [f"opc{i}x{TAG}" for i in range(1, 4)]
UNTRUSTED = f"opc9x{TAG}"  # its host key is not in known_hosts
#: an alert per component target of the fleet: what maintenance must silence
RULE = {
    "alert": "OpsTestComponentSeen",
    "expr": f'up{{job="collectors", host=~"opc.x{TAG}"}} >= 0',
    "labels": {"severity": "warning"},
}


@pytest.fixture(scope="module")
def fleet(cfg: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    found = ops_fixtures.start_fleet(
        tmp_path_factory.mktemp("fleet"), [*NAMES, UNTRUSTED], cfg, trusted=NAMES
    )
    try:
        for name in [*NAMES, UNTRUSTED]:
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
    ops = fleet.settings(cfg, PORTAL_OPS_GATE_SECONDS="8")
    return ops.replace(prometheus_url=mon.prom_url, alertmanager_url=mon.am_url)


@pytest.fixture
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
    assert run.result["after"][host] == {"l1": "back"}
    logged = [
        e
        for e in audit.query(ops_cfg.database_url, action="ops.restart*", target=host)
        if e.params.get("run") == run_id
    ]
    assert [e.action for e in logged] == ["ops.restart.requested"] + ["ops.restart.step"] * 3 + [
        "ops.restart"
    ]
    assert logged[-1].outcome == "ok" and logged[-1].reason == "stuck"
    assert logged[-1].before == run.result["before"] and logged[-1].after == run.result["after"]


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


def am_alerts(am_url: str, host: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{am_url}/api/v2/alerts", params={"filter": f'host="{host}"'}, timeout=5)
    resp.raise_for_status()
    return [a for a in resp.json() if a["labels"].get("alertname") == RULE["alert"]]


def silenced(am_url: str, host: str) -> bool | None:
    """True when all of the host's test alerts are suppressed, False when all active."""
    found = am_alerts(am_url, host)
    states = {a["status"]["state"] for a in found}
    if states == {"suppressed"}:
        return True
    return False if states == {"active"} else None


def test_a_component_that_never_comes_back_fails_the_gate_and_the_action(
    ops_cfg: Settings, fleet: Fleet, worker: Worker
) -> None:
    host = NAMES[2]
    fleet.set_flags(host, "l1", broken=True)
    try:
        run_id = runs.request(ops_cfg, OPERATOR, "restart", [host], {"component": "l1"}, "t")
        run = finished(ops_cfg, run_id)
    finally:
        fleet.set_flags(host, "l1", broken=False)
        fleet.svc_call(host, "start", "l1")
    assert run.state == "failed", run.steps
    assert run.error and "did not come back" in run.error
    assert [(s.name, s.state) for s in run.steps][-2:] == [
        ("restart", "succeeded"),
        ("health gate", "failed"),
    ]
    entries = audit.query(ops_cfg.database_url, action="ops.restart", target=host)
    assert any(e.params.get("run") == run_id and e.outcome.startswith("failed") for e in entries)
    assert runs.locks(ops_cfg).get(host) is None


def test_maintenance_silences_the_hosts_alerts_and_off_restores_them(
    ops_cfg: Settings, fleet: Fleet, mon: Monitoring, worker: Worker
) -> None:
    host, other = NAMES[1], NAMES[0]
    assert process.wait_until(lambda: silenced(mon.am_url, host) is False, 30)
    run_id = runs.request(
        ops_cfg, OPERATOR, "maintenance", [host], {"mode": "on", "until": "1h"}, "fan swap"
    )
    run = finished(ops_cfg, run_id)
    assert run.state == "succeeded", run
    silence_id = run.result and run.result["after"][host]["silence"]
    assert silence_id and alertmanager.silence_state(mon.am_url, silence_id) == "active"
    made = next(s for s in alertmanager.list_silences(mon.am_url) if s.id == silence_id)
    assert made.created_by == "user:tester" and "fan swap" in made.comment
    assert made.matchers == (alertmanager.Matcher("host", host),)
    assert process.wait_until(lambda: silenced(mon.am_url, host) is True, 30)
    assert silenced(mon.am_url, other) is False
    assert registry.get_host(ops_cfg, host).state == "maintenance"  # type: ignore[union-attr]
    assert [w.host for w in maintenance.open_windows(ops_cfg, host)] == [host]

    off = finished(
        ops_cfg,
        runs.request(ops_cfg, OPERATOR, "maintenance", [host], {"mode": "off"}, "fan done"),
    )
    assert off.state == "succeeded", off
    assert alertmanager.silence_state(mon.am_url, silence_id) == "expired"
    assert process.wait_until(lambda: silenced(mon.am_url, host) is False, 30)
    assert registry.get_host(ops_cfg, host).state == "up"  # type: ignore[union-attr]
    assert maintenance.open_windows(ops_cfg, host) == []
    assert off.result and off.result["before"][host]["state"] == "maintenance"


def test_maintenance_expires_by_itself_and_is_announced(
    ops_cfg: Settings, fleet: Fleet, mon: Monitoring, worker: Worker
) -> None:
    host = NAMES[0]
    since = bus.last_id(ops_cfg.database_url)
    run = finished(
        ops_cfg,
        runs.request(ops_cfg, OPERATOR, "maintenance", [host], {"mode": "on", "until": "3s"}, "x"),
    )
    assert run.state == "succeeded", run

    def topics() -> list[str]:
        return [e.topic for e in bus.history(ops_cfg.database_url, ["ops.*"], since, 1000)]

    # the worker ends it (its last act is the event)
    assert process.wait_until(lambda: "ops.maintenance.expired" in topics(), 30)
    assert "ops.maintenance.started" in topics()
    assert not maintenance.open_windows(ops_cfg, host)
    assert registry.get_host(ops_cfg, host).state == "up"  # type: ignore[union-attr]
    assert audit.query(ops_cfg.database_url, action="ops.maintenance.expired", target=host)
    assert process.wait_until(lambda: silenced(mon.am_url, host) is False, 30)


def test_an_unknown_host_key_is_refused(ops_cfg: Settings, fleet: Fleet, worker: Worker) -> None:
    calls = len(fleet.calls(UNTRUSTED))
    run = finished(
        ops_cfg,
        runs.request(ops_cfg, OPERATOR, "restart", [UNTRUSTED], {"component": "l1"}, "t"),
    )
    assert run.state == "failed"
    assert run.error and "host key is not in" in run.error and "refusing" in run.error
    assert len(fleet.calls(UNTRUSTED)) == calls
    client = SshClient(SshConfig(fleet.key, fleet.known_hosts, connect_timeout=5))
    try:
        with pytest.raises(PortalError, match="refusing to connect"):
            client.run(Target(UNTRUSTED, "127.0.0.1", fleet.host(UNTRUSTED).port), ["true"], 5)
        trusted = Target(NAMES[0], "127.0.0.1", fleet.host(NAMES[0]).port)
        first = client.run(trusted, ["echo", "a b; c"], 5)
        assert (first.exit_status, first.stdout) == (0, "a b; c\n")  # one word, no shell
        assert client.run(trusted, ["sh", "-c", "echo oops >&2; exit 3"], 5).stderr == "oops\n"
        slow = client.run(trusted, ["sleep", "30"], 0.5)
        assert slow.timed_out and slow.exit_status == 124 and "timed out" in slow.stderr
        assert client.run(trusted, ["true"], 5).ok  # the connection outlives a timeout
        assert client.connected() == [trusted]  # the connection was reused
    finally:
        client.close()


def _run_count(cfg: Settings) -> int:
    with get_engine(cfg.database_url).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(ops_runs)).scalar_one())


def test_shell_syntax_in_host_or_unit_names_is_refused_before_any_connection(
    ops_cfg: Settings, fleet: Fleet
) -> None:
    calls = {h: len(fleet.calls(h)) for h in NAMES}
    count = _run_count(ops_cfg)
    for host in ("x;reboot", "$(reboot)", "-oProxyCommand=sh", "a b", ""):
        with pytest.raises(PortalError):
            runs.request(ops_cfg, OPERATOR, "restart", [host or " "], {"component": "l1"}, "t")
    for comp in ("l1;reboot", "l1 && reboot", "`reboot`"):
        with pytest.raises(PortalError, match="component"):
            runs.request(ops_cfg, OPERATOR, "restart", [NAMES[0]], {"component": comp}, "t")
    verb = templates.load(fleet.commands)["restart"]
    for unit in ("l1; reboot", "$(id)", "-f", "l1\nreboot"):
        with pytest.raises(PortalError, match="unit"):
            templates.render(verb, {"host": NAMES[0], "unit": unit})
    assert templates.render(verb, {"host": NAMES[0], "unit": "l1@2.service"})[-1] == (
        "l1@2.service"
    )
    assert _run_count(ops_cfg) == count
    assert {h: len(fleet.calls(h)) for h in NAMES} == calls


def test_site_templates_are_checked_when_loaded(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    for text, why in (
        ("restart: rm -rf {path}\n", "uses {path}"),
        ("reboot: {command: reboot, role: king}\n", "role"),
        ("Bad Verb: true\n", "verb"),
        ("restart: 'unclosed \"quote'\n", "bad command"),
    ):
        bad.write_text(text)
        with pytest.raises(PortalError, match=why):
            templates.load(bad)
    good = tmp_path / "good.yml"
    good.write_text("reboot: {command: sudo reboot now, role: admin}\n")
    verbs = templates.load(good)
    assert verbs["reboot"].role == "admin" and verbs["restart"].template.endswith("{unit}")


def test_two_actions_on_one_host_never_interleave(
    ops_cfg: Settings, fleet: Fleet, worker: Worker
) -> None:
    """Three runs on one host, one elsewhere, two workers claiming side by side."""
    host = NAMES[0]
    other = Worker(ops_cfg, threads=4)
    thread = threading.Thread(target=other.serve, daemon=True)
    thread.start()
    try:
        ids = [
            runs.request(ops_cfg, OPERATOR, "restart", [host], {"component": "l1"}, f"n{i}")
            for i in range(3)
        ]
        ids.append(runs.request(ops_cfg, OPERATOR, "restart", [NAMES[1]], {"component": "l1"}, "x"))
        done = [finished(ops_cfg, r) for r in ids]
    finally:
        other.stop.set()
        thread.join(timeout=60)
    assert [r.state for r in done] == ["succeeded"] * 4, done
    same = sorted(done[:3], key=lambda r: r.started_at or r.created_at)
    for a, b in zip(same, same[1:], strict=False):
        assert a.finished_at and b.started_at and b.started_at >= a.finished_at
        assert max(s.finished_at for s in a.steps if s.finished_at) <= min(
            s.started_at for s in b.steps
        )
    assert host not in runs.locks(ops_cfg)


def test_drain_refuses_real_time_hosts_unless_an_admin_forces_it(
    ops_cfg: Settings, fleet: Fleet, worker: Worker
) -> None:
    host = NAMES[1]
    port = fleet.add_unit(host, "beamformer")
    registry.add_component(
        ops_cfg,
        host,
        "beamformer",
        kind="real-time",
        metrics_port=port,
        labels={"beams": [3, 4]},
    )
    with pytest.raises(PortalError, match="real-time components"):
        runs.request(ops_cfg, OPERATOR, "drain", [host], {}, "disk swap")
    with pytest.raises(runs.Forbidden, match="admin"):
        runs.request(ops_cfg, OPERATOR, "drain", [host], {"force": "yes"}, "disk swap")
    dry = runs.get(
        ops_cfg,
        runs.request(ops_cfg, ADMIN, "drain", [host], {"force": "yes"}, "plan", dry_run=True),
    )
    plan = next(s.detail for s in dry.steps if s.name == "plan")
    assert "beamformer" in plan and "beams [3, 4]" in plan and "pointings/hour" in plan
    assert dry.result and f"{fleet.svc} stop {host} beamformer" in dry.result["commands"][host]
    assert host not in drain.drained_hosts(ops_cfg.database_url)
    assert fleet.unit_pid(host, "beamformer") is not None

    run = finished(
        ops_cfg, runs.request(ops_cfg, ADMIN, "drain", [host], {"force": "yes"}, "disk swap")
    )
    assert run.state == "succeeded", run
    assert host in drain.drained_hosts(ops_cfg.database_url)
    assert fleet.unit_pid(host, "beamformer") is None
    assert [
        c.desired_state for c in registry.list_components(ops_cfg, host) if c.name == "beamformer"
    ] == ["stopped"]

    back = finished(ops_cfg, runs.request(ops_cfg, OPERATOR, "undrain", [host], {}, "done"))
    assert back.state == "succeeded", back
    assert host not in drain.drained_hosts(ops_cfg.database_url)
    assert fleet.unit_pid(host, "beamformer") is not None
    registry.remove_component(ops_cfg, host, "beamformer")
    fleet.svc_call(host, "stop", "beamformer")


def test_reboot_only_in_maintenance_then_waits_for_ssh_and_collector(
    ops_cfg: Settings, fleet: Fleet, worker: Worker
) -> None:
    host = NAMES[2]
    with pytest.raises(PortalError, match="neither in maintenance nor drained"):
        runs.request(ops_cfg, OPERATOR, "reboot", [host], {}, "kernel update")
    with pytest.raises(runs.Forbidden):
        runs.request(ops_cfg, OPERATOR, "reboot", [host], {"force": "yes"}, "kernel update")
    finished(
        ops_cfg,
        runs.request(ops_cfg, OPERATOR, "maintenance", [host], {"mode": "on", "until": "1h"}, "k"),
    )
    collector = fleet.unit_pid(host, "collector")
    run = finished(ops_cfg, runs.request(ops_cfg, OPERATOR, "reboot", [host], {}, "kernel"))
    off = runs.request(ops_cfg, OPERATOR, "maintenance", [host], {"mode": "off"}, "k done")
    assert run.state == "succeeded", run
    assert [(s.name, s.state) for s in run.steps] == [
        ("batch work", "succeeded"),  # no batch system here: nothing running
        ("reboot", "succeeded"),
        ("ssh back", "succeeded"),
        ("collector back", "succeeded"),
    ]
    assert (fleet.state(host) / "boots").read_text() == "1"
    assert fleet.unit_pid(host, "collector") not in (None, collector)
    assert finished(ops_cfg, off).state == "succeeded"


def test_roles_viewer_gets_403_and_operator_may_act(ops_cfg: Settings, fleet: Fleet) -> None:
    from portal.auth import tokens
    from portal.web.app import create_app

    host = NAMES[0]
    with pytest.raises(runs.Forbidden, match="needs role operator"):
        runs.request(ops_cfg, VIEWER, "restart", [host], {"component": "l1"}, "t")
    refused = audit.query(ops_cfg.database_url, actor="user:watcher", action="ops.restart.*")
    assert refused and refused[-1].outcome == "refused"

    app = create_app(ops_cfg.replace(anonymous="none"))
    client = app.test_client()
    secret = {
        role: tokens.create(ops_cfg.database_url, ADMIN, f"ops-{role}-{TAG}", role)
        for role in ("viewer", "operator")
    }
    body = {
        "action": "restart",
        "hosts": [host],
        "params": {"component": "l1"},
        "reason": "check",
        "dry_run": True,
    }
    as_viewer = {"Authorization": f"Bearer {secret['viewer']}"}
    as_operator = {"Authorization": f"Bearer {secret['operator']}"}
    assert client.post("/api/ops/runs", json=body, headers=as_viewer).status_code == 403
    ok = client.post("/api/ops/runs", json=body, headers=as_operator)
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["state"] == "succeeded" and ok.get_json()["dry_run"] is True
    got = client.get(f"/api/ops/runs/{ok.get_json()['id']}", headers=as_viewer)
    assert got.status_code == 200 and len(got.get_json()["steps"]) == 3
    bad = client.post("/api/ops/runs", json={**body, "hosts": ["a;b"]}, headers=as_operator)
    assert bad.status_code == 400 and "invalid" in bad.get_json()["error"]
    for odd in ("nope", "\u00b3", "99999999999999999999"):  # a superscript digit, an overflow
        assert client.get(f"/api/ops/runs/{odd}", headers=as_viewer).status_code == 404, odd
    assert client.get("/api/ops/maintenance", headers=as_viewer).status_code == 200


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_the_cli_refuses_a_user_without_a_role(tmp_path: Path, portal_env: dict[str, str]) -> None:
    tmp_path.chmod(0o755)
    env = {
        **os.environ,
        **portal_env,
        "PORTAL_DATA_DIR": str(tmp_path / "v"),
        "HOME": str(tmp_path),
    }
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable]
    probe = subprocess.run([*argv, "-c", "import portal"], env=env, cwd="/", capture_output=True)
    if probe.returncode != 0:
        pytest.skip("user nobody cannot run this checkout's interpreter")
    result = subprocess.run(
        [*argv, "-m", "portal", "ops", "restart", NAMES[0], "--component", "l1", "--reason", "x"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "`portal ops restart` needs role operator" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_maintenance_and_history_show_the_reason(
    ops_cfg: Settings, fleet: Fleet, worker: Worker
) -> None:
    host = NAMES[0]
    dry = run_portal(
        "ops",
        "maintenance",
        "on",
        host,
        "--until",
        "2h",
        "--reason",
        "psu",
        "--dry-run",
        check=True,
    )
    assert "dry run" in dry.stdout and "silence" in dry.stdout
    on = run_portal(
        "ops", "maintenance", "on", host, "--until", "2h", "--reason", "psu swap 4711", check=True
    )
    assert "succeeded" in on.stdout, on.stdout + on.stderr
    listed = run_portal("ops", "maintenance", "list", check=True).stdout
    assert host in listed and "psu swap 4711" in listed
    status = run_portal("ops", "status", check=True).stdout
    assert re.search(r"ops workers running: [1-9]", status), status
    assert any(host in line and "maintenance until" in line for line in status.splitlines())
    run_portal("ops", "maintenance", "off", host, "--reason", "psu done", check=True)
    history = run_portal("ops", "history", "--host", host, check=True).stdout
    assert "psu swap 4711" in history and "maintenance" in history
    missing = run_portal("ops", "maintenance", "on", host, "--reason", "x")
    assert missing.returncode == 2 and "--until" in missing.stderr


def test_a_killed_worker_leaves_no_host_locked(
    ops_cfg: Settings, fleet: Fleet, mon: Monitoring, tmp_path: Path
) -> None:
    host = NAMES[2]
    env = {
        **os.environ,
        **fleet.env,
        "PORTAL_PROMETHEUS_URL": mon.prom_url,
        "PORTAL_ALERTMANAGER_URL": mon.am_url,
        "PORTAL_OPS_GATE_SECONDS": "600",
    }
    fleet.set_flags(host, "l1", broken=True)  # the gate waits: the run is mid-way for long
    pid = process.spawn(portal_cmd("ops", "worker"), tmp_path / "worker.log", env=env)
    try:
        run_id = runs.request(ops_cfg, OPERATOR, "restart", [host], {"component": "l1"}, "t")

        def gating() -> bool:
            return any(
                s.name == "health gate" and s.state == "running"
                for s in runs.get(ops_cfg, run_id).steps
            )

        assert process.wait_until(gating, 60), (
            runs.get(ops_cfg, run_id),
            process.tail(tmp_path / "worker.log"),
        )
        assert runs.locks(ops_cfg).get(host) == run_id
        os.kill(pid, signal.SIGKILL)
        assert process.wait_until(lambda: not process.alive(pid), 10)
    finally:
        process.stop(pid, timeout=5)
        fleet.set_flags(host, "l1", broken=False)
        fleet.svc_call(host, "start", "l1")
    assert process.wait_until(lambda: run_id in runs.recover_orphans(ops_cfg), 30)
    run = runs.get(ops_cfg, run_id)
    assert run.state == "failed" and run.error and "ended mid-run" in run.error
    assert host not in runs.locks(ops_cfg)
    assert [s.state for s in run.steps if s.name == "health gate"] == ["failed"]
    assert runs.recover_orphans(ops_cfg) == []  # once


def test_desired_state_restarts_a_component_found_down_with_back_off(
    ops_cfg: Settings, fleet: Fleet, worker: Worker
) -> None:
    from portal.ops import desired

    host = NAMES[1]
    cfg = fleet.settings(ops_cfg, PORTAL_OPS_DESIRED_STATE="true")
    assert desired.tick(ops_cfg, only={host}) == []  # off by default
    fleet.svc_call(host, "stop", "l1")
    assert process.wait_until(lambda: (host, "l1") in desired.found_down(cfg), 30)
    started = desired.tick(cfg, only={host})
    assert len(started) == 1
    assert desired.tick(cfg, only={host}) == []  # busy, then backing off: not twice at once
    run = finished(cfg, started[0])
    assert run.state == "succeeded", run.steps
    assert run.actor == "system:ops-desired-state" and "found down" in run.reason
    assert fleet.unit_pid(host, "l1") is not None
    assert audit.query(cfg.database_url, actor="system:ops-desired-state", action="ops.restart")


def test_a_request_needs_a_reason_of_one_line(ops_cfg: Settings, fleet: Fleet) -> None:
    count = _run_count(ops_cfg)
    for reason, why in (
        ("", "needs a reason"),
        ("  ", "needs a reason"),
        ("a\nb", "one line"),
        ("a\x00b", "one line"),
        ("x" * 501, "one line"),
    ):
        with pytest.raises(PortalError, match=why):
            runs.request(ops_cfg, OPERATOR, "restart", [NAMES[0]], {"component": "l1"}, reason)
    with pytest.raises(PortalError, match="unknown ops action"):
        runs.request(ops_cfg, OPERATOR, "explode", [NAMES[0]], {}, "why")
    with pytest.raises(PortalError, match="takes no parameter"):
        runs.request(ops_cfg, OPERATOR, "undrain", [NAMES[0]], {"force": "yes"}, "why")
    with pytest.raises(PortalError, match="exactly one host"):
        runs.request(ops_cfg, OPERATOR, "reboot", NAMES[:2], {}, "why")
    with pytest.raises(PortalError, match="not in the inventory"):
        runs.request(ops_cfg, OPERATOR, "undrain", ["nosuchhost"], {}, "why")
    assert _run_count(ops_cfg) == count


def test_a_resumable_run_whose_owner_is_gone_is_queued_again_with_its_locks(
    ops_cfg: Settings, fleet: Fleet
) -> None:
    host = NAMES[1]
    run_id = runs.request(ops_cfg, OPERATOR, "undrain", [host], {}, "resume me")
    gone_owner = 2**31 - 7  # a key no live session holds: its process has ended
    claimed = runs.claim(ops_cfg, gone_owner, only=[run_id])
    assert claimed is not None and claimed.id == run_id and claimed.state == "running"
    assert runs.locks(ops_cfg)[host] == run_id
    assert runs.claim(ops_cfg, gone_owner, only=[run_id]) is None  # running: not claimable
    assert runs.recover_orphans(ops_cfg, resumable=lambda name: name == "undrain") == [run_id]
    again = runs.get(ops_cfg, run_id)
    assert again.state == "queued" and again.worker is None
    assert runs.locks(ops_cfg)[host] == run_id  # still its own: nobody slips in between
    resumed = runs.claim(ops_cfg, runs.owner_key(ops_cfg.database_url), only=[run_id])
    assert resumed is not None and resumed.attempts == 2
    runs.finish(ops_cfg, resumed, "cancelled", error="test")
    assert host not in runs.locks(ops_cfg)
    assert runs.recover_orphans(ops_cfg) == []


def test_a_maintenance_window_ending_soon_is_announced_once(
    ops_cfg: Settings, fleet: Fleet, mon: Monitoring, worker: Worker
) -> None:
    host = NAMES[2]
    since = bus.last_id(ops_cfg.database_url)
    on = runs.request(ops_cfg, OPERATOR, "maintenance", [host], {"mode": "on", "until": "5m"}, "w")
    assert finished(ops_cfg, on).state == "succeeded"
    maintenance.tick(ops_cfg)
    maintenance.tick(ops_cfg)  # the worker ticks too: still announced once

    def ending() -> list[bus.Event]:
        found = bus.history(ops_cfg.database_url, ["ops.maintenance.ending"], since, 100)
        return [e for e in found if e.payload.get("host") == host]

    assert len(ending()) == 1 and ending()[0].payload["reason"] == "w"

    def told() -> list[dict[str, Any]]:  # people are told through Alertmanager, unsilenced
        resp = httpx.get(
            f"{mon.am_url}/api/v2/alerts",
            params={"filter": f'maintenance_host="{host}"'},
            timeout=5,
        )
        return [a for a in resp.json() if a["labels"]["alertname"] == "MaintenanceEnding"]

    assert [a["status"]["state"] for a in told()] == ["active"]
    off = runs.request(ops_cfg, OPERATOR, "maintenance", [host], {"mode": "off"}, "w done")
    assert finished(ops_cfg, off).state == "succeeded"
    assert len(ending()) == 1
    assert process.wait_until(lambda: told() == [], 30)  # ended early: resolved


def test_a_run_taken_over_is_neither_finished_nor_unlocked_by_its_old_owner(
    ops_cfg: Settings, fleet: Fleet
) -> None:
    """After its owner lost its database link, a recovered run belongs to whoever claimed it."""
    host = NAMES[0]
    run_id = runs.request(ops_cfg, OPERATOR, "undrain", [host], {}, "link lost")
    lost_owner = 2**31 - 11
    stale = runs.claim(ops_cfg, lost_owner, only=[run_id])
    assert stale is not None
    assert runs.recover_orphans(ops_cfg, resumable=lambda name: True) == [run_id]
    taken = runs.claim(ops_cfg, runs.owner_key(ops_cfg.database_url), only=[run_id])
    assert taken is not None and taken.worker != lost_owner
    runs.finish(ops_cfg, stale, "succeeded")  # the old owner comes back: ignored
    assert runs.get(ops_cfg, run_id).state == "running"
    assert runs.locks(ops_cfg)[host] == run_id
    runs.finish(ops_cfg, taken, "succeeded")
    assert runs.get(ops_cfg, run_id).state == "succeeded"
    assert host not in runs.locks(ops_cfg)


def test_an_operator_cancels_a_running_action_and_its_host_is_freed(
    ops_cfg: Settings, fleet: Fleet
) -> None:
    """A restart stuck in its health gate (the component never comes back, gate of 600 s):
    cancel asks it to stop, it ends ``cancelled`` at its next check, unlocked and audited."""
    host = NAMES[1]
    patient = ops_cfg.replace(extra={**ops_cfg.extra, "PORTAL_OPS_GATE_SECONDS": "600"})
    found = Worker(patient, threads=2)
    thread = threading.Thread(target=found.serve, daemon=True)
    thread.start()
    fleet.set_flags(host, "l1", broken=True)
    try:
        run_id = runs.request(ops_cfg, OPERATOR, "restart", [host], {"component": "l1"}, "t")

        def gating() -> bool:
            steps = runs.get(ops_cfg, run_id).steps
            return any(s.name == "health gate" and s.state == "running" for s in steps)

        assert process.wait_until(gating, 60), runs.get(ops_cfg, run_id)
        with pytest.raises(runs.Forbidden, match="needs role operator"):
            runs.cancel(ops_cfg, Identity("v", "user", "viewer", "127.0.0.1", "r"), run_id)
        assert runs.cancel(ops_cfg, OPERATOR, run_id, "wrong host") == "running"
        run = finished(ops_cfg, run_id)
    finally:
        found.stop.set()
        thread.join(timeout=60)
        fleet.set_flags(host, "l1", broken=False)
        fleet.svc_call(host, "start", "l1")
    assert run.state == "cancelled" and run.error == "cancelled by an operator", run
    assert [s.state for s in run.steps if s.name == "health gate"] == ["failed"]
    assert host not in runs.locks(ops_cfg)
    entries = audit.query(ops_cfg.database_url, action="ops.restart.cancel", target=host)
    assert any(e.params.get("run") == run_id and e.reason == "wrong host" for e in entries)
    with pytest.raises(PortalError, match=f"run {run_id} already cancelled"):
        runs.cancel(ops_cfg, OPERATOR, run_id)
