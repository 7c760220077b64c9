"""Inventory: CRUD through the CLI, file_sd regenerated on every change, Prometheus follows."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry

from collectors.telemetry import Telemetry
from portal.events import bus as events
from portal.inventory import registry as inventory
from portal.metrics.client import Prometheus
from portal.settings import Settings
from portal.stack import manager
from portal.stack.configs import targets_dir
from portal.stack.process import wait_until
from tests.conftest import free_port, run_portal


def _targets(cfg: Settings, file: str = "hosts.json") -> dict[str, dict]:
    groups = json.loads((targets_dir(cfg) / file).read_text())
    return {g["labels"]["host"]: g for g in groups}


def test_hosts_cli_add_update_list_remove(cfg: Settings, portal_env: dict[str, str]) -> None:
    name = f"cn-{uuid.uuid4().hex[:6]}"
    since = events.last_id(cfg.database_url)
    out = run_portal("hosts", "add", name, "--role", "compute", "--port", "9111", check=True)
    # it says what it reached: nothing listens on 9111
    assert out.stdout.strip() == (
        f"host {name} (compute) added; its collector at 127.0.0.1:9111 does not answer yet"
    )
    assert _targets(cfg)[name] == {
        "targets": ["127.0.0.1:9111"],
        "labels": {"host": name, "role": "compute", "declared_state": "up"},
    }
    # adding again updates in place (idempotent), and the targets follow
    out = run_portal("hosts", "add", name, "--role", "storage", "--port", "9112", check=True)
    assert out.stdout.startswith(f"host {name} (storage) updated; ")
    listed = json.loads(run_portal("hosts", "list", "--json", check=True).stdout)
    mine = [h for h in listed if h["name"] == name]
    assert len(mine) == 1 and mine[0]["role"] == "storage" and mine[0]["collector_port"] == 9112
    assert _targets(cfg)[name]["targets"] == ["127.0.0.1:9112"]

    run_portal(
        "hosts",
        "add-component",
        name,
        "l1",
        "--match",
        "l1_main",
        "--metrics-port",
        "9300",
        check=True,
    )
    comps = _targets(cfg, "components.json")
    assert comps[name]["labels"] == {"host": name, "component": "l1"}
    assert comps[name]["targets"] == ["127.0.0.1:9300"]

    # a declared state survives re-registration without one (the demo, a collector)
    run_portal("hosts", "state", name, "maintenance", check=True)
    assert inventory.add_host(cfg, name, role="storage", collector_port=9113).state == "maintenance"
    assert _targets(cfg)[name]["labels"]["declared_state"] == "maintenance"
    run_portal("hosts", "state", name, "retired", check=True)
    assert name not in _targets(cfg)  # retired hosts are no longer scraped
    run_portal("hosts", "remove", name, check=True)
    assert inventory.get_host(cfg, name) is None
    assert inventory.list_components(cfg, name) == []

    topics = [e.topic for e in events.history(cfg.database_url, ["inventory.*"], since=since)]
    assert topics == [
        "inventory.host_added",
        "inventory.host_added",
        "inventory.component_added",
        "inventory.host_state",
        "inventory.host_added",
        "inventory.host_state",
        "inventory.host_removed",
    ]


def test_bad_input_is_one_clear_line_and_changes_nothing(cfg: Settings) -> None:
    before = (targets_dir(cfg) / "hosts.json").read_text() if targets_dir(cfg).exists() else ""
    cases = [
        (("hosts", "add", "bad name!"), "error: host name 'bad name!' is invalid"),
        (("hosts", "add", "ok1", "--port", "70000"), "error: collector port 70000 is out of range"),
        (("hosts", "remove", "no-such-host"), "error: host 'no-such-host' is not in the inventory"),
        (("hosts", "add-component", "no-such-host", "l1"), "error: host 'no-such-host' is not"),
        (("hosts", "add", "ok2", "--label", "novalue"), "error: label 'novalue' must look like"),
    ]
    for args, message in cases:
        result = run_portal(*args)
        assert result.returncode == 1, result
        assert result.stderr.strip().startswith(message), result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert inventory.get_host(cfg, "ok1") is None and inventory.get_host(cfg, "ok2") is None
    after = (targets_dir(cfg) / "hosts.json").read_text() if targets_dir(cfg).exists() else ""
    assert after == before


def test_adding_a_host_makes_prometheus_scrape_it_without_restart(stack: Settings) -> None:
    prom_pid = manager.load_state(stack)["prometheus"]["pid"]
    name = f"sim-{uuid.uuid4().hex[:6]}"
    tel = Telemetry("l1", host=name, cfg=stack, registry=CollectorRegistry())
    tel.gauge("obs_l1_lag_seconds", "lag", ["beam"]).labels(beam=5).set(2.5)
    port = tel.serve(free_port(), addr="127.0.0.1")
    try:
        inventory.add_host(stack, name, role="compute", collector_port=port)
        prom = Prometheus(stack.prometheus_url)

        def scraped_up() -> bool:
            return any(
                t["labels"].get("host") == name and t["health"] == "up" for t in prom.targets()
            )

        assert wait_until(scraped_up, 60, interval=0.5), f"{name} never became an up target"
        query = f'obs_l1_lag_seconds{{host="{name}", beam="5"}}'
        assert wait_until(lambda: prom.scalar(query) is not None, 30, interval=0.5)
        assert prom.scalar(query) == 2.5
        assert manager.load_state(stack)["prometheus"]["pid"] == prom_pid  # never restarted

        inventory.remove_host(stack, name)
        gone = wait_until(
            lambda: all(t["labels"].get("host") != name for t in prom.targets()), 60, 0.5
        )
        assert gone, f"{name} still a target after removal"
    finally:
        tel.close()


def test_targets_file_is_replaced_atomically(cfg: Settings) -> None:
    from portal.metrics.targets import write_targets

    path = write_targets(cfg)
    assert path == targets_dir(cfg) / "hosts.json"
    assert json.loads(path.read_text()) is not None
    leftovers = [p for p in Path(path.parent).iterdir() if p.name.startswith(".")]
    assert leftovers == []
