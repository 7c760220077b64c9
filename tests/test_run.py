"""``portal run`` (what ``make run`` calls) brings everything up and Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from portal.db import engine as db_engine
from portal.grafana import provisioning
from portal.readiness import http_ready
from portal.stack import process
from tests.conftest import free_port, portal_cmd, run_portal, shared_tmpdir


@pytest.fixture
def fresh_database(pg_server: str) -> Iterator[str]:
    """A database nothing has touched: `portal run` migrates it and creates the first admin."""
    url = f"{pg_server}/obsportal_run_{uuid.uuid4().hex[:8]}"
    yield url
    db_engine.drop_database(url)


def test_run_then_ctrl_c_leaves_no_process(fresh_database: str) -> None:
    database_url = fresh_database
    tmp = shared_tmpdir("obsportal-run-")
    # the session exports WARNING; gunicorn's lines are INFO
    env = _run_env(tmp, database_url, PORTAL_LOG_LEVEL="INFO")
    proc = subprocess.Popen(
        [*portal_cmd("run", "--no-demo")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def stack_ok() -> bool:
            out = run_portal("stack", "status", "--json", env=env)
            if out.returncode != 0:
                return False
            return all(s["state"] in ("healthy", "external") for s in json.loads(out.stdout))

        assert process.wait_until(stack_ok, 90, interval=0.5), "stack never became healthy"
        assert process.wait_until(
            lambda: len(psutil.Process(proc.pid).children(recursive=True)) >= 3, 60
        )

        # components log to <data_dir>/log/<name>.log and the real shipper stores those lines
        def shipped() -> bool:
            out = run_portal("logs", "--component", "web", "--since", "10m", env=env)
            return out.returncode == 0 and "Booting worker" in out.stdout

        assert process.wait_until(shipped, 90, interval=1.0), (
            "web log never reached the store:\n"
            + "\n".join(
                f"== {p.name}\n{p.read_text()[-1500:]}" for p in (tmp / "log").glob("*.log")
            )
            + run_portal("logs", "--since", "10m", env=env).stdout[-1500:]
        )
        # the first admin, anonymous reads but no anonymous alerts, and an audited login
        web = "http://" + env["PORTAL_WEB_BIND"]
        assert process.wait_until(lambda: http_ready(web, "/healthz"), 60)
        password = (tmp / "admin-password").read_text().strip()
        assert (tmp / "admin-password").stat().st_mode & 0o777 == 0o600
        assert httpx.get(web + "/api/whoami", timeout=10).json()["role"] == "viewer"
        assert httpx.post(web + "/api/alerts", json={}, timeout=10).status_code == 401
        with httpx.Client(base_url=web, timeout=10, headers={"Origin": web}) as browser:
            login = browser.post("/login", data={"user": "admin", "password": password})
            assert login.status_code == 302, login.text
            assert browser.get("/api/whoami").json() == {
                "actor": "admin",
                "kind": "user",
                "role": "admin",
            }
        audit = run_portal("audit", "--action", "login", "--format", "jsonl", env=env, check=True)
        assert [json.loads(line)["actor"] for line in audit.stdout.splitlines()] == ["user:admin"]
        before = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        state = json.loads((tmp / "stack" / "state.json").read_text())
        managed = [e["pid"] for e in state.values() if e.get("managed") and "pid" in e]
        assert len(managed) == 3  # prometheus, pushgateway, alertmanager (PostgreSQL external)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert "stopping" in out
    assert f"created user admin with password {password}" in out
    for pid in before | set(managed):
        assert process.wait_until(lambda p=pid: not process.alive(p), 15), f"pid {pid} survived"


def _run_env(tmp: Path, database_url: str, **extra: str) -> dict[str, str]:
    """``portal run`` on ports and a data dir of its own, as `make run` would with no settings."""
    return {
        **os.environ,
        "PORTAL_DATA_DIR": str(tmp),
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_COLLECTOR_PORT": str(free_port()),
        "PORTAL_WEB_WORKERS": "1",
        "PORTAL_ANONYMOUS": "viewer",
        **extra,
    }


@pytest.mark.parametrize("setting", ["PORTAL_WEB_BIND", "PORTAL_COLLECTOR_PORT"])
def test_run_with_a_port_taken_fails_at_once_with_one_line(pg_server: str, setting: str) -> None:
    tmp = shared_tmpdir("obsportal-run-port-")
    url = f"{pg_server}/obsportal_never_{uuid.uuid4().hex[:8]}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        value = f"127.0.0.1:{port}" if setting == "PORTAL_WEB_BIND" else str(port)
        result = subprocess.run(
            portal_cmd("run", "--no-demo"),
            env=_run_env(tmp, url, **{setting: value}),
            capture_output=True,
            text=True,
            timeout=120,  # a deadline for a hang, not a speed claim
        )
    assert result.returncode != 0
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {setting}: port {port} on ") and "in use" in line, line
    # before starting anything: no service, no state, no database
    assert not (tmp / "stack").exists() and not (tmp / "log").exists()
    assert not db_engine.is_reachable(url)
    shutil.rmtree(tmp, ignore_errors=True)


def test_a_crashed_service_is_reported_and_restarted(fresh_database: str) -> None:
    tmp = shared_tmpdir("obsportal-run-crash-")
    env = _run_env(tmp, fresh_database)
    proc = subprocess.Popen(
        portal_cmd("run", "--no-demo"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or ()), daemon=True)
    reader.start()
    state_path = tmp / "stack" / "state.json"
    prom_url = env["PORTAL_PROMETHEUS_URL"]

    def prometheus_pid() -> int | None:
        try:
            entry = json.loads(state_path.read_text()).get("prometheus") or {}
        except (FileNotFoundError, ValueError):
            return None
        return entry.get("pid")

    try:
        started = process.wait_until(lambda: any("portal: http" in o for o in output), 120, 0.2)
        assert started, "".join(output)
        old = prometheus_pid()
        assert old and http_ready(prom_url)
        os.kill(old, signal.SIGKILL)

        def reported() -> bool:
            return any("[portal run] prometheus crashed (exit by SIGKILL): " in o for o in output)

        assert process.wait_until(reported, 60, 0.2), "".join(output)
        (line,) = [o for o in output if "prometheus crashed" in o]
        assert re.search(r"; restarting in \d+s$", line.strip()), line
        # back without anyone doing anything: a new process, healthy, recorded by the manager
        back = process.wait_until(
            lambda: prometheus_pid() not in (None, old) and http_ready(prom_url), 90, 0.2
        )
        assert back, "".join(output)
        assert process.alive(prometheus_pid(), "prometheus")
        status = json.loads(run_portal("stack", "status", "--json", env=env).stdout)
        assert {s["name"]: s["state"] for s in status}["prometheus"] == "healthy"

        def published() -> list[dict[str, object]]:
            with db_engine.connect_raw(fresh_database) as conn:
                rows = conn.execute(
                    "SELECT payload FROM events WHERE topic = 'stack.crashed'"
                ).fetchall()
            return [r[0] for r in rows]

        assert process.wait_until(lambda: bool(published()), 30, 0.2)
        (event,) = published()
        assert event["service"] == "prometheus" and event["exit"] == "exit by SIGKILL"
        assert event["pid"] == old

        # `portal stack up` (here under `portal run`) wrote Grafana provisioning for this database
        doc = yaml.safe_load(
            (tmp / "grafana-provisioning" / "datasources" / "obsportal.yaml").read_text()
        )
        (pg,) = [d for d in doc["datasources"] if d["uid"] == "obs-postgres"]
        assert pg["jsonData"]["timescaledb"] is provisioning.timescaledb_for(fresh_database)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
        reader.join(timeout=10)
    assert proc.returncode == 0, "".join(output)
    assert process.wait_until(lambda: not process.alive(prometheus_pid() or 0), 15)
    shutil.rmtree(tmp, ignore_errors=True)
