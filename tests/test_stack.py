"""``portal stack``: up -> healthy -> down leaves nothing; up twice is idempotent."""

from __future__ import annotations

import json
import os
import re
import signal

from portal.stack import process
from tests.conftest import free_port, run_portal, shared_tmpdir


def _env(tmp: str, db_port: int) -> dict[str, str]:
    return {
        "PORTAL_DATA_DIR": tmp,
        "PORTAL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{db_port}/obsportal",
        "PORTAL_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
    }


def test_stack_with_private_postgres_up_status_down() -> None:
    tmp = shared_tmpdir("obsportal-stack-")
    env = _env(str(tmp), free_port())  # nothing listens there: a private PostgreSQL starts
    try:
        run_portal("stack", "up", env=env, check=True)
        st = run_portal("stack", "status", "--json", env=env)
        assert st.returncode == 0, st.stdout + st.stderr
        services = {s["name"]: s for s in json.loads(st.stdout)}
        assert set(services) == {"postgresql", "prometheus", "pushgateway", "alertmanager"}
        assert all(s["state"] == "healthy" and s["managed"] for s in services.values())
        pids = {n: s["pid"] for n, s in services.items()}
        assert all(process.alive(p) for p in pids.values())

        again = run_portal("stack", "up", env=env, check=True)  # idempotent
        assert "already healthy" in again.stderr
        st2 = json.loads(run_portal("stack", "status", "--json", env=env).stdout)
        assert {s["name"]: s["pid"] for s in st2} == pids

        # a crashed service is reported, not hidden; `up` restarts it
        os.kill(pids["pushgateway"], signal.SIGKILL)
        process.wait_until(lambda: not process.alive(pids["pushgateway"]), 10)
        crashed = run_portal("stack", "status", env=env)
        assert crashed.returncode == 1
        assert "crashed" in crashed.stdout
        run_portal("stack", "up", env=env, check=True)
        st3 = {
            s["name"]: s
            for s in json.loads(run_portal("stack", "status", "--json", env=env).stdout)
        }
        assert st3["pushgateway"]["state"] == "healthy"
        pids["pushgateway"] = st3["pushgateway"]["pid"]

        run_portal("db", "upgrade", env=env, check=True)
        status = run_portal("db", "status", env=env, check=True).stdout
        assert re.search(r"revision: (\d+)  head: \1\b", status), status
    finally:
        run_portal("stack", "down", env=env)
    for name, pid in pids.items():
        assert process.wait_until(lambda p=pid: not process.alive(p), 10), f"{name} still runs"
    st = json.loads(run_portal("stack", "status", "--json", env=env).stdout)
    assert all(s["state"] == "stopped" for s in st)


def test_external_services_are_left_alone(stack) -> None:
    # the session stack already runs Prometheus etc.; a second stack dir sees them as external
    tmp = shared_tmpdir("obsportal-ext-")
    env = {"PORTAL_DATA_DIR": str(tmp)}
    out = run_portal("stack", "up", env=env, check=True)
    assert "already external" in out.stderr
    st = {s["name"]: s for s in json.loads(run_portal("stack", "status", "--json", env=env).stdout)}
    assert all(s["state"] == "external" and not s["managed"] for s in st.values())
    run_portal("stack", "down", env=env, check=True)
    assert (
        json.loads(run_portal("stack", "status", "--json", env=env).stdout)[1]["state"]
        == "external"
    )  # still running: down did not stop what it did not start


def test_missing_binary_names_the_package(monkeypatch) -> None:
    from portal.errors import PortalError
    from portal.stack import manager

    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        manager.find_binary(manager.PUSHGATEWAY)
    except PortalError as exc:
        assert "apt-get install -y prometheus-pushgateway" in str(exc)
    else:
        raise AssertionError("expected a PortalError")
