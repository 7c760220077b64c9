"""Rehearsals on the simulator: `portal demo fault` raises the real alerts, `demo incident` plays.

A real ``portal demo run`` (its own data dir, free ports, a database of its own) is scraped by a
real Prometheus of this module's own that evaluates the real rule expressions of
``prometheus/rules/obsportal.yml`` from a generated copy whose only change is every ``for:``
shortened to 2 s, with scrape and evaluation interval 1 s, so each alert fires within seconds
of its fault and the test does not wait out 2 to 30 minutes of ``for:``. Everything is polled
against deadlines; processes are stopped by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml

from portal.db import engine as db_engine
from portal.db import migrate
from portal.metrics.client import Prometheus
from portal.readiness import http_ready
from portal.stack import configs, process
from tests.conftest import REPO, free_port, portal_cmd, run_portal, shared_tmpdir

SMALL = ("--compute-nodes", "2", "--beams-per-node", "4", "--storage-nodes", "1")
SIM_HOSTS = {"head01", "cn01", "cn02", "st01", "batch01"}
RULES = REPO / "prometheus" / "rules" / "obsportal.yml"

#: kind, target, --for, the alert it raises, the host label of that alert
FAULTS = [
    ("host-down", "cn02", "20s", "HostDown"),
    ("component-crash", "head01", "20s", "ComponentDown"),
    ("packet-loss", "cn01", "25s", "RealtimePacketLoss"),
    ("disk-filling", "batch01", "30s", "DiskFillsWithin24h"),
    ("transfer-stall", "st01", "45s", "TransferStalled"),
    ("clock-skew", "head01", "20s", "ClockSkew"),
]


@dataclass
class Sim:
    env: dict[str, str]
    data_dir: Path
    url: str
    prom: Prometheus
    pid: int
    log: Path


def _one(url: str, sql: str, *args: object) -> int:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


def _fast_rules(target: Path) -> None:
    """The real rule file with every ``for:`` at 2 s (expressions untouched)."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    target.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def sim(pg_server: str, portal_env: dict[str, str]) -> Iterator[Sim]:
    url = f"{pg_server}/obsportal_faults_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    migrate.upgrade(url)
    tmp = shared_tmpdir("obsportal-faults-")
    data_dir = tmp / "var"
    env = {
        **os.environ,
        "PORTAL_DATABASE_URL": url,
        "PORTAL_DATA_DIR": str(data_dir),
        "PORTAL_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",  # nobody: pushes warn
    }
    _fast_rules(tmp / "rules.yml")
    prom_port = free_port()
    configs.write(
        tmp / "prometheus.yml",
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp / "rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "collectors",
                    "file_sd_configs": [
                        {
                            "files": [str(data_dir / "prometheus" / "targets" / "*.json")],
                            "refresh_interval": "1s",
                        }
                    ],
                }
            ],
        },
    )
    cmd = portal_cmd("demo", "run", "--speed", "60", "--base-port", "0", "--mirror-seconds", "2",
                     *SMALL)  # fmt: skip
    pids = [
        process.spawn(cmd, tmp / "demo.log", cwd=REPO, env=env),
        process.spawn(
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp / "prometheus.log",
        ),
    ]
    prom = Prometheus(f"http://127.0.0.1:{prom_port}")
    try:
        assert process.wait_until(lambda: http_ready(prom.url), 30), process.tail(
            tmp / "prometheus.log"
        )

        def up() -> set[str]:
            return {
                t["labels"].get("host", "")
                for t in prom.targets()
                if t["health"] == "up" and t["labels"].get("job") == "collectors"
            }

        assert process.wait_until(lambda: up() >= SIM_HOSTS, 90, interval=0.5), (
            up(),
            process.tail(tmp / "demo.log", 20),
        )
        yield Sim(env, data_dir, url, prom, pids[0], tmp / "demo.log")
    finally:
        for pid in pids:
            process.stop(pid)
        db_engine.dispose_all()
        db_engine.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)


def _firing(prom: Prometheus) -> set[tuple[str, str]]:
    return {
        (a["metric"]["alertname"], a["metric"].get("host", ""))
        for a in prom.query('ALERTS{alertstate="firing"}')
    }


def test_each_fault_raises_its_alert_and_it_resolves_after_for(sim: Sim) -> None:
    # some history first: the rate()-based rules need samples from before the fault
    loss = 'obs_l1_packets_received_total{host="cn01"}'
    assert process.wait_until(lambda: len(sim.prom.query(f"{loss}[1m]")) > 0, 60, interval=0.5)
    assert process.wait_until(
        lambda: len(sim.prom.query(f"{loss}[1m]")[0]["values"]) >= 10, 60, interval=0.5
    )
    for kind, target, duration, _alert in FAULTS:
        out = run_portal("demo", "fault", kind, target, "--for", duration, env=sim.env, check=True)
        assert f"{kind} on {target}" in out.stdout
    listed = run_portal("demo", "fault", "list", "--json", env=sim.env, check=True).stdout
    until = {(f["kind"], f["target"]): f["until"] for f in map(json.loads, listed.splitlines())}
    assert set(until) == {(k, t) for k, t, _d, _a in FAULTS}
    expected = {(alert, target): (kind, target) for kind, target, _d, alert in FAULTS}
    fired: dict[tuple[str, str], float] = {}
    resolved: dict[tuple[str, str], float] = {}

    def progress() -> bool:
        now, firing = time.time(), _firing(sim.prom)
        for key in expected:
            if key in firing and key not in fired:
                fired[key] = now
            elif key in fired and key not in firing and key not in resolved:
                resolved[key] = now
        return len(resolved) == len(expected)

    done = process.wait_until(progress, 420, interval=0.5)
    assert set(fired) == set(expected), (set(expected) - set(fired), process.tail(sim.log, 20))
    assert done, f"not resolved: {set(expected) - set(resolved)}"
    for key, when in resolved.items():
        assert fired[key] < until[expected[key]], key  # fired while the fault was on
        assert when >= until[expected[key]], key  # and resolved only once it ended
    assert run_portal("demo", "fault", "list", env=sim.env).stdout.strip() == "no active faults"
    audited = "SELECT count(*) FROM audit_log WHERE action = 'demo.fault'"
    assert _one(sim.url, audited) == len(FAULTS)


def test_every_host_logs_warnings_and_errors_appear(sim: Sim) -> None:
    logs = sim.data_dir / "log" / "demo"

    def lines() -> list[dict]:
        return [json.loads(line) for p in logs.glob("*.log") for line in p.read_text().splitlines()]

    def complete() -> bool:
        got = lines()
        return (
            {r["host"] for r in got} >= SIM_HOSTS
            and {"WARNING", "ERROR"} <= {r["level"] for r in got}
            and {r["component"] for r in got}
            >= {"l1", "pointing-recorder", "storage", "hhat-worker"}
        )

    assert process.wait_until(complete, 120, interval=1.0), process.tail(sim.log, 20)
    for host in SIM_HOSTS:
        assert (logs / f"{host}.log").stat().st_size > 0, host


def test_events_keep_flowing_and_the_backlog_moves(sim: Sim) -> None:
    count = "SELECT count(*) FROM events WHERE source = 'demo' AND topic NOT LIKE 'demo.%%'"
    seen = [_one(sim.url, count)]
    for _ in range(2):  # more, and more again: not a burst at start-up
        assert process.wait_until(lambda: _one(sim.url, count) > seen[-1], 60, interval=0.5)
        seen.append(_one(sim.url, count))
    topics = "SELECT count(DISTINCT topic) FROM events WHERE source = 'demo'"
    assert _one(sim.url, topics) >= 2
    values: list[float] = []

    def moved() -> bool:
        v = sim.prom.scalar('obs_hhat_stacks_pending{host="batch01", stack="daily"}')
        if v is not None and (not values or v != values[-1]):
            values.append(v)
        ups = any(b > a for a, b in zip(values, values[1:], strict=False))
        downs = any(b < a for a, b in zip(values, values[1:], strict=False))
        return ups and downs  # grows with the data, drains while a batch run works

    assert process.wait_until(moved, 180, interval=0.5), values


def test_incident_plays_to_completion_and_clears_its_faults(sim: Sim, tmp_path: Path) -> None:
    env = {**sim.env, "PORTAL_DATA_DIR": str(tmp_path / "var")}  # not the running simulator
    out = run_portal("demo", "incident", "--speed", "600", env=env, timeout=120, check=True)
    text = out.stdout
    for kind, *_rest in FAULTS:
        assert f"(fault {kind} " in text, kind
    assert text.strip().splitlines()[-1].endswith("incident over: every fault has cleared")
    assert run_portal("demo", "fault", "list", env=env).stdout.strip() == "no active faults"
    assert _one(sim.url, "SELECT count(*) FROM audit_log WHERE action = 'demo.incident'") == 1


def test_fault_mistakes_are_one_line_and_clear_ends_faults(sim: Sim, tmp_path: Path) -> None:
    env = {**sim.env, "PORTAL_DATA_DIR": str(tmp_path / "var")}
    bad = run_portal("demo", "fault", "host-down", "cn01/l1", env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: a host-down fault names a host, not a component: use cn01"
    bad = run_portal("demo", "fault", "clock-skew", "cn01", "--for", "soon", env=env)
    assert bad.stderr.strip() == "error: --for 'soon' is not a duration (30s, 15m, 2h, 3d, 1w)"
    assert run_portal("demo", "fault", "meltdown", "cn01", env=env).returncode == 2
    typo = run_portal("demo", "fault", "clock-skew", "cn99", env=env, check=True)
    assert "warning: no host cn99 in the inventory" in typo.stderr
    good = run_portal("demo", "fault", "clock-skew", "cn01", env=env, check=True)
    assert good.stderr == ""
    run_portal("demo", "fault", "packet-loss", "cn01", env=env, check=True)
    cleared = run_portal("demo", "fault", "clear", "clock-skew", env=env, check=True)
    assert cleared.stdout.strip() == "cleared 2 faults"  # on cn99 and cn01
    listed = run_portal("demo", "fault", "list", env=env, check=True).stdout
    assert "packet-loss" in listed and "clock-skew" not in listed
    run_portal("demo", "fault", "clear", env=env, check=True)
    assert run_portal("demo", "fault", "list", env=env).stdout.strip() == "no active faults"
