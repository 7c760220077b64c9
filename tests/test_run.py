"""``portal run`` (what ``make run`` calls) brings everything up and Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import psutil
import pytest

from portal.db import engine as db_engine
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
    env = {
        **os.environ,
        "PORTAL_DATA_DIR": str(tmp),
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_COLLECTOR_PORT": str(free_port()),
        "PORTAL_WEB_WORKERS": "1",
        "PORTAL_LOG_LEVEL": "INFO",  # the session exports WARNING; gunicorn's lines are INFO
        "PORTAL_ANONYMOUS": "viewer",  # as `make run` sets it
    }
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
