"""``portal run`` (what ``make run`` calls) brings everything up and Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import psutil

from portal.stack import process
from tests.conftest import free_port, portal_cmd, run_portal, shared_tmpdir


def test_run_then_ctrl_c_leaves_no_process(database_url: str) -> None:
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
        before = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        state = json.loads((tmp / "stack" / "state.json").read_text())
        managed = [e["pid"] for e in state.values() if e.get("managed") and "pid" in e]
        assert len(managed) == 3  # prometheus, pushgateway, alertmanager (PostgreSQL external)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert "stopping" in out
    for pid in before | set(managed):
        assert process.wait_until(lambda p=pid: not process.alive(p), 15), f"pid {pid} survived"
