"""Rolling updates, rollback and power-outage recovery against real sshd "hosts", a real
Prometheus scraping their components, and the session's PostgreSQL (``tests/ops_fixtures.py``,
``tests/ops_fleet_fixtures.py``); the Operations page's callbacks with real role tokens."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
from tests.conftest import portal_cmd, run_portal
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
#: an alert of the component that fires as soon as a host runs version 6.6 of it
RULE = {
    "alert": "FleetTestBadVersion",
    "expr": f'obs_component_version_info{{version="6.6", host=~"rl.x{TAG}"}} == 1',
    "labels": {"severity": "warning"},
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
    found = ops_fixtures.start_monitoring(tmp_path_factory.mktemp("mon"), targets_dir(cfg), [RULE])
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
        if found._listen is not None:  # its "a worker runs" lock: the CLI would wait for it
            found._listen.close()


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
    ops_cfg: Settings,
    ops_env: dict[str, str],
    fleet: Fleet,
    page_app: Any,
    role_tokens: dict[str, str],
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
        # the page offers the rollback and shows its dry run first
        shown = {"ops-run.data": run_id, "ops-reason.value": "undo 2.0"}
        view = _post(page_app, role_tokens["viewer"], _body(page_app, "refresh_run", "", shown))
        assert view.get_json()["response"]["ops-rollback"]["style"] == {}
        offer = {**shown, "ops-rollback.n_clicks": 1}
        body = _body(page_app, "act", "ops-rollback.n_clicks", offer)
        dialog = json.dumps(_post(page_app, role_tokens["operator"], body).get_json())
        for host in ROLL[:3]:
            assert f"{host}: {fleet.root / 'fleet-update'} {host} l1 1" in dialog
        assert ROLL[3] not in dialog
        with pytest.raises(rolling.PortalError, match="did not change"):
            runs.request(ops_cfg, OPERATOR, "rollback", ROLL, {"run": str(run_id)}, "undo")
        cli = run_portal(
            "ops", "rollback", str(run_id), "--settle", "1s", "--reason", "undo 2.0", env=ops_env
        )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    back = int(cli.stdout.split()[1].rstrip(":"))
    assert f"rollback of run {run_id} on {', '.join(ROLL[:3])}" in cli.stdout
    assert "hosts restored" in cli.stdout and "3/3" in cli.stdout  # the progress bar
    assert f"run {back} succeeded" in cli.stdout
    done = runs.get(ops_cfg, back)
    assert done.state == "succeeded", done
    assert [more.version(fleet, h, "l1") for h in ROLL] == ["1", "1", "1", "1"]
    assert all(fleet.unit_pid(h, "l1") for h in ROLL)
    assert done.result and done.result["before"][ROLL[2]]["version"] == "2.0"
    labels = {c.host: c.labels for c in registry.list_components(ops_cfg) if c.host in ROLL}
    assert [labels[h].get("version") for h in ROLL[:3]] == ["1", "1", "1"]


def test_an_alert_of_the_component_firing_in_the_settle_time_fails_the_gate(
    ops_cfg: Settings, fleet: Fleet
) -> None:
    host = ROLL[3]
    params = {"component": "l1", "version": "6.6", "settle": "20s"}
    with worker(ops_cfg):
        run = finished(ops_cfg, runs.request(ops_cfg, OPERATOR, "update", [host], params, "try"))
        assert run.state == "failed", run
        assert "FleetTestBadVersion firing during the settle time" in (run.error or "")
        assert more.version(fleet, host, "l1") == "6.6" and fleet.unit_pid(host, "l1")
        undo = {"run": str(run.id), "settle": "1s"}
        back = runs.request(ops_cfg, OPERATOR, "rollback", [host], undo, "undo")
        assert finished(ops_cfg, back).state == "succeeded"  # version 1 is quiet
    assert more.version(fleet, host, "l1") == "1"


def test_cli_update_dry_run_and_refusals(
    ops_cfg: Settings, ops_env: dict[str, str], fleet: Fleet
) -> None:
    dry = run_portal(
        "ops", "update", "--component", "l1", "--version", "3.1", "--batch", "50%",
        "--reason", "check", "--dry-run", env=ops_env,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for host in ROLL:  # every host running l1, by default
        assert f"would run: {fleet.root / 'fleet-update'} {host} l1 3.1" in dry.stdout
    assert all(more.version(fleet, h, "l1") != "3.1" for h in ROLL)
    bad = run_portal(
        "ops", "update", ROLL[0], "--component", "l1", "--version", "1;reboot", "--reason", "x",
        env=ops_env,
    )  # fmt: skip
    assert bad.returncode == 1 and "parameter version '1;reboot' must match" in bad.stderr
    assert "Traceback" not in bad.stderr
    recover = run_portal(
        "ops", "recover", *TIER_HOSTS, "--reason", "drill", "--dry-run", env=ops_env
    )
    assert recover.returncode == 0, recover.stdout + recover.stderr
    tiers = [line.split(":")[0] for line in recover.stdout.splitlines() if line.startswith("tier")]
    assert tiers == [f"tier {t}" for t in ("database", "storage", "real-time", "batch", "portal")]
    assert f"would run: {fleet.root / 'wake'} db{TAG}" in recover.stdout
    with pytest.raises(runs.Forbidden, match="needs role admin"):
        runs.request(ops_cfg, OPERATOR, "update", [ROLL[0]], {"component": "l1", "gate": "no"}, "x")


# -- power-outage recovery -----------------------------------------------------------------------
def _steps(cfg: Settings, run_id: int) -> list[sa.Row]:
    with get_engine(cfg.database_url).connect() as conn:
        return list(
            conn.execute(
                sa.select(ops_steps).where(ops_steps.c.run_id == run_id).order_by(ops_steps.c.seq)
            )
        )


def test_recovery_killed_mid_way_resumes_and_finishes_in_tier_order(
    ops_cfg: Settings, ops_env: dict[str, str], fleet: Fleet, tmp_path: Path
) -> None:
    hosts = list(TIER_HOSTS)
    storage = f"st{TAG}"
    more.power_cut(fleet, hosts)
    more.wake_delay(fleet, storage, 3)
    log = tmp_path / "worker.log"
    first = more.worker_process(ops_env, log)
    before = {r.id for r in runs.history(ops_cfg, 100, action="recover")}
    assert process.wait_until(lambda: runs.workers_alive(ops_cfg) > 0, 60), log.read_text()
    # the CLI requests it and follows it with its bars across the kill and the resume
    cli = subprocess.Popen(
        portal_cmd("ops", "recover", *hosts, "--reason", "power back after the cut"),
        env={**os.environ, **ops_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def requested() -> list[int]:
            found = runs.history(ops_cfg, 100, action="recover")
            return [r.id for r in found if r.id not in before and not r.dry_run]

        assert process.wait_until(lambda: bool(requested()), 60), log.read_text()
        run_id = requested()[0]

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
        out, err = cli.communicate(timeout=60)
    finally:
        process.stop(second.pid, timeout=30)
        if cli.poll() is None:
            cli.kill()
    assert run.state == "succeeded", (run, log.read_text())
    assert cli.returncode == 0, out + err
    assert out.index("tier database:") < out.index("tier storage:") < out.index("tier portal:")
    assert f"run {run_id}: recovery of 5 hosts in 5 tiers" in out
    for tier in ("database", "storage", "real-time", "batch", "portal"):
        assert re.search(rf"^  {tier} +1/1 back", out, re.M), out
    assert out.rstrip().endswith(f"run {run_id} succeeded"), out
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


# -- the Operations page -------------------------------------------------------------------------
PAGE_HOST = f"rl1x{TAG}"  # maintenance does not touch its components


@pytest.fixture(scope="module")
def page_app(ops_cfg: Settings) -> Any:
    from portal.web.app import create_app

    return create_app(ops_cfg.replace(anonymous="none"))


@pytest.fixture(scope="module")
def role_tokens(ops_cfg: Settings) -> dict[str, str]:
    from portal.auth import tokens

    admin = Identity("test-ops-fleet", "cli", "admin", "local")
    return {
        r: tokens.create(ops_cfg.database_url, admin, f"fleet-{r}-{TAG}", r)
        for r in ("viewer", "operator")
    }


def _callback(app: Any, name: str) -> tuple[str, dict[str, Any]]:
    """The output key and entry of the Operations page's callback ``name``."""
    dash_app = app.extensions["portal_dash"]
    for output, entry in dash_app.callback_map.items():
        fn = entry.get("callback")
        if fn is not None and fn.__name__ == name and "ops-" in output:
            return output, entry
    raise AssertionError(f"no callback {name}")


def _body(app: Any, name: str, trigger: str, values: dict[str, Any]) -> dict[str, Any]:
    """A ``/_dash-update-component`` request as the browser sends it."""
    output, entry = _callback(app, name)

    def spec(item: dict[str, Any]) -> Any:
        ident, prop = item["id"], item["property"]
        if ident.startswith("{"):  # a pattern-matching ALL: one entry per input found
            params = values.get("params", {})
            return [
                {
                    "id": {"type": "ops-param", "name": k},
                    "property": prop,
                    "value": v if prop == "value" else {"type": "ops-param", "name": k},
                }
                for k, v in params.items()
            ]
        return {"id": ident, "property": prop, "value": values.get(f"{ident}.{prop}")}

    outputs = [
        {"id": o.split(".")[0], "property": o.split(".")[1]} for o in output.strip(".").split("...")
    ]
    return {
        "output": output,
        "outputs": outputs,
        "inputs": [spec(i) for i in entry["inputs"]],
        "state": [spec(s) for s in entry["state"]],
        "changedPropIds": [trigger],
    }


def _post(app: Any, token: str, body: dict[str, Any]) -> Any:
    from portal.auth.web import DASH_DISPATCH

    client = app.test_client()
    return client.post(DASH_DISPATCH, json=body, headers={"Authorization": f"Bearer {token}"})


def _runs_of(cfg: Settings, host: str) -> list[runs.Run]:
    return runs.history(cfg, 100, host=host)


def test_operator_puts_a_host_into_maintenance_from_the_page_and_a_viewer_cannot(
    ops_cfg: Settings, page_app: Any, role_tokens: dict[str, str]
) -> None:
    from portal.alerts import alertmanager

    form = {
        "ops-start.n_clicks": 1,
        "ops-hosts.value": [PAGE_HOST],
        "ops-action.value": "maintenance",
        "ops-reason.value": "fan swap, ticket 77",
        "params": {"mode": "on", "until": "2h"},
    }
    body = _body(page_app, "act", "ops-start.n_clicks", form)
    before = len(_runs_of(ops_cfg, PAGE_HOST))
    refused = _post(page_app, role_tokens["viewer"], body)
    assert refused.status_code == 403
    assert "needs operator" in refused.get_json()["error"]
    assert len(_runs_of(ops_cfg, PAGE_HOST)) == before  # nothing requested
    with worker(ops_cfg):
        answer = _post(page_app, role_tokens["operator"], body)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        response = answer.get_json()["response"]
        run_id = response["ops-run"]["data"]
        assert f"run {run_id} queued" in json.dumps(response["ops-message"])
        run = finished(ops_cfg, run_id)
    assert run.state == "succeeded", run
    assert run.actor == f"token:fleet-operator-{TAG}" and run.reason == "fan swap, ticket 77"
    assert registry.get_host(ops_cfg, PAGE_HOST).state == "maintenance"  # type: ignore[union-attr]
    mutes = [
        s
        for s in alertmanager.silences(ops_cfg.alertmanager_url)
        if s.mutes({"host": PAGE_HOST, "alertname": "HostDown"})
    ]
    assert mutes and "fan swap, ticket 77" in mutes[0].comment
    off = runs.request(ops_cfg, OPERATOR, "maintenance", [PAGE_HOST], {"mode": "off"}, "done")
    with worker(ops_cfg):
        assert finished(ops_cfg, off).state == "succeeded"


def test_a_dangerous_action_shows_its_dry_run_before_it_is_queued(
    ops_cfg: Settings, page_app: Any, role_tokens: dict[str, str], fleet: Fleet
) -> None:
    host = f"hd{TAG}"
    form = {
        "ops-start.n_clicks": 1,
        "ops-hosts.value": [host],
        "ops-action.value": "restart",
        "ops-reason.value": "stuck",
        "params": {"component": "collector"},
    }
    missing = _post(
        page_app, role_tokens["operator"], _body(page_app, "act", "ops-start.n_clicks", form)
    )
    assert "not in the inventory" in json.dumps(missing.get_json()["response"]["ops-message"])
    form["params"] = {"component": "svc1"}
    form["ops-hosts.value"] = [f"cn{TAG}"]
    answer = _post(
        page_app, role_tokens["operator"], _body(page_app, "act", "ops-start.n_clicks", form)
    )
    response = answer.get_json()["response"]
    assert response["ops-confirm"]["style"]["display"] == "block"
    assert f"{fleet.svc} restart cn{TAG} svc1" in json.dumps(response["ops-confirm-body"])
    pending = response["ops-pending"]["data"]
    queued = [r for r in _runs_of(ops_cfg, f"cn{TAG}") if not r.dry_run and r.state == "queued"]
    assert queued == []  # only the dry run so far
    confirm = {**form, "ops-confirm-go.n_clicks": 1, "ops-pending.data": pending}
    body = _body(page_app, "act", "ops-confirm-go.n_clicks", confirm)
    assert _post(page_app, role_tokens["viewer"], body).status_code == 403
    answer = _post(page_app, role_tokens["operator"], body)
    run_id = answer.get_json()["response"]["ops-run"]["data"]
    run = runs.get(ops_cfg, run_id)
    assert run.action == "restart" and not run.dry_run and run.hosts == (f"cn{TAG}",)
    runs.cancel(ops_cfg, OPERATOR, run_id, "test: not needed")
    # recover without hosts: the whole inventory, each host named (and so locked) in the run
    whole = {**form, "ops-hosts.value": [], "ops-action.value": "recover", "params": {}}
    answer = _post(
        page_app, role_tokens["operator"], _body(page_app, "act", "ops-start.n_clicks", whole)
    )
    pending = answer.get_json()["response"]["ops-pending"]["data"]
    assert pending["action"] == "recover" and set(TIER_HOSTS) | set(ROLL) <= set(pending["hosts"])
    view = _post(
        page_app,
        role_tokens["viewer"],
        _body(page_app, "refresh_run", "ops-run.data", {"ops-run.data": run_id}),
    )
    assert f"run {run_id}: restart" in view.get_data(as_text=True)


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian chromium")
def test_page_in_chromium_restart_confirmed_after_its_dry_run(
    ops_cfg: Settings, ops_env: dict[str, str], fleet: Fleet
) -> None:
    """The real portal (gunicorn) in headless Chromium: an operator logs in, picks restart,
    sees the dry run's commands in the dialog, confirms, and follows the run to its end."""
    from selenium.webdriver.common.by import By

    from portal.auth import users
    from tests.browser import Browser, PortalProcess
    from tests.conftest import REPO, free_port, shared_tmpdir

    host, name, password = f"cn{TAG}", f"op{TAG}", "correct horse battery"
    admin = Identity("test-ops-fleet", "cli", "admin", "local")
    users.add(ops_cfg.database_url, admin, name, "operator", password)
    tmp = shared_tmpdir("portal-ops-page-")
    env = {**ops_env, "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}"}
    env["PORTAL_DATA_DIR"] = str(tmp / "var")
    with PortalProcess(env, tmp / "web.log") as portal, worker(ops_cfg), Browser() as b:
        d = b.driver
        d.get(f"{portal.url}/operations?host={host}")
        b.wait_rendered()
        assert "starting actions needs role operator" in b.page_text()  # anonymous viewer
        mine = ".portal-page .portal-error-card, .portal-page .portal-notice"  # not the shell's
        cards = d.find_elements(By.CSS_SELECTOR, mine)
        assert not cards, [c.text for c in cards]
        assert host in d.find_element(By.ID, "ops-fleet-table").text
        d.get(f"{portal.url}/login?next=/operations%3Fhost%3D{host}")
        d.find_element(By.ID, "login-user").send_keys(name)
        d.find_element(By.ID, "login-password").send_keys(password)
        d.find_element(By.ID, "login-submit").click()
        b.wait(lambda: "/operations" in d.current_url, what="back on the page")
        b.wait_rendered()
        b.console_errors()
        d.find_element(By.ID, "ops-action").click()  # Dash 4's drop-down: a list box opens
        b.wait(
            lambda: next(
                o
                for o in d.find_elements(By.CSS_SELECTOR, "[role=option]")
                if o.text.startswith("restart:")
            ),
            what="the restart option",
        ).click()
        param = b.wait(
            lambda: d.find_element(By.XPATH, "//input[contains(@id, '\"component\"')]"),
            what="the component input",
        )
        param.send_keys("svc1")
        d.find_element(By.ID, "ops-reason").send_keys("stuck after the RFI storm")
        d.find_element(By.ID, "ops-start").click()
        shown = b.wait(
            lambda: d.find_element(By.ID, "ops-confirm-commands").text, what="the dry run"
        )
        assert f"{host}: {fleet.svc} restart {host} svc1" in shown
        (REPO / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(REPO / "docs" / "screenshots" / "operations.png"))
        d.find_element(By.ID, "ops-confirm-go").click()

        def ended() -> str:  # read in one go: the live view re-renders the element meanwhile
            shown = d.find_element(By.ID, "ops-run-state")
            done = shown.get_attribute("data-state") in ("succeeded", "failed")
            return shown.text if done else ""

        state = b.wait(ended, timeout=60, what="the run's end")
        assert "restart on " + host in state and "succeeded" in state, state
        steps = b.wait(lambda: d.find_element(By.ID, "ops-run-steps").text, what="the steps")
        assert "health gate" in steps and "succeeded" in steps
        assert b.console_errors() == []
    assert fleet.unit_pid(host, "svc1")
