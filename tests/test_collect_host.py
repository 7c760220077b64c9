"""``portal collect host``: Prometheus scrapes it, the database gets the same samples."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from portal.db import engine as db_engine
from portal.inventory import registry as inventory
from portal.metrics.client import Prometheus
from portal.settings import Settings
from portal.stack import process
from portal.stack.process import wait_until
from tests.conftest import REPO, free_port, portal_cmd, run_portal


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def _get(samples: dict, name: str, **labels: str) -> float | None:
    for (n, lbls), value in samples.items():
        if n == name and all(dict(lbls).get(k) == v for k, v in labels.items()):
            return value
    return None


def test_collector_serves_prometheus_and_database(stack: Settings, database_url: str) -> None:
    host = f"h-{uuid.uuid4().hex[:6]}"
    port = free_port()
    # a "component" process on this host for the per-process metrics
    marker = f"obs_component_{uuid.uuid4().hex[:8]}"
    comp = subprocess.Popen([sys.executable, "-c", f"import time  # {marker}\ntime.sleep(600)"])
    inventory.add_host(stack, host, collector_port=port)
    inventory.add_component(stack, host, "beamformer", process_match=marker)
    cmd = portal_cmd("collect", "host", "--host", host, "--port", str(port), "--interval", "0.5")
    proc = subprocess.Popen(cmd, cwd=REPO, env=os.environ.copy(), stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: _up(port), 30), "collector never served /metrics"
        assert wait_until(
            lambda: _get(_scrape(port), "obs_process_up", component="beamformer") == 1.0, 30
        )
        spool = lambda: _get(_scrape(port), "portal_spool_bytes", writer="host-collector")  # noqa: E731
        assert wait_until(lambda: spool() is not None, 30)  # after the write path's first pass
        s = _scrape(port)
        total = _get(s, "obs_host_memory_total_bytes", host=host)
        assert total is not None and total > 0
        assert _get(s, "obs_host_cpu_usage_ratio", cpu="total") is not None
        assert _get(s, "obs_host_filesystem_size_bytes") is not None
        assert (_get(s, "obs_process_resident_memory_bytes", component="beamformer") or 0) > 0
        assert _get(s, "portal_spool_oldest_age_seconds", writer="host-collector") is not None

        prom = Prometheus(stack.prometheus_url)
        query = f'obs_host_memory_total_bytes{{host="{host}"}}'
        assert wait_until(lambda: prom.scalar(query) is not None, 60, interval=0.5), query
        assert prom.scalar(query) == total  # the value the collector reported
        up = f'obs_process_up{{host="{host}", component="beamformer"}}'
        assert wait_until(lambda: prom.scalar(up) == 1.0, 30, interval=0.5)

        with psycopg.connect(db_engine.libpq_dsn(database_url)) as conn:

            def stored() -> list[tuple]:
                return conn.execute(
                    "SELECT DISTINCT value FROM metric_samples WHERE host = %s "
                    "AND name = 'obs_host_memory_total_bytes'",
                    (host,),
                ).fetchall()

            assert wait_until(lambda: bool(stored()), 30, interval=0.2)
            assert stored() == [(total,)]
            comp_row = conn.execute(
                "SELECT count(*) FROM metric_samples WHERE host = %s AND component = 'beamformer'"
                " AND name = 'obs_process_up' AND value = 1",
                (host,),
            ).fetchone()
            assert comp_row is not None and comp_row[0] >= 1
    finally:
        process.stop(proc.pid)
        process.stop(comp.pid)
        proc.wait()
        comp.wait()
        inventory.remove_host(stack, host)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_port_in_use_is_one_clear_line(cfg: Settings) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_portal("collect", "host", "--port", str(port), "--bind", "127.0.0.1")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: PORTAL_COLLECTOR_PORT: port {port} on 127.0.0.1 is in use (Address already in use)"
    )
