"""Log searches cannot pile up: a per-user limit across gunicorn workers (429), and a query whose
client left is cancelled in PostgreSQL at once, not at its time limit."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psycopg
import pytest

from portal import heavy
from portal.db import engine as db_engine
from portal.stack.process import wait_until
from tests.browser import PortalProcess
from tests.conftest import free_port

SLOW = r"(.*)(.*)(.*)\3\2\1$"  # backtracks for minutes over a few long messages
RUNNING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND state = 'active' AND query LIKE '%portal_logs%' AND pid <> pg_backend_pid()"
)


@pytest.fixture(scope="module")
def portal(
    portal_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PortalProcess, Path]]:
    tmp = tmp_path_factory.mktemp("heavy")
    env = {
        "PORTAL_DATA_DIR": str(tmp / "var"),
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_WEB_WORKERS": "2",  # the limit holds across workers
        "PORTAL_HEAVY_QUERIES_PER_USER": "1",
        "PORTAL_QUERY_TIMEOUT_SECONDS": "600",  # only a cancellation can end the slow query
    }
    with PortalProcess(env, tmp / "web.log") as proc:
        yield proc, tmp / "var"


def running(url: str) -> int:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        row = conn.execute(RUNNING).fetchone()
        return int(row[0]) if row else 0


def test_one_user_gets_429_when_its_slots_are_taken(
    portal: tuple[PortalProcess, Path], operator_auth: dict[str, str]
) -> None:
    proc, data_dir = portal
    me = httpx.get(f"{proc.url}/api/whoami", headers=operator_auth, timeout=10).json()
    held = heavy.Guard(data_dir, heavy.identity_key(me["kind"], me["actor"], ""), 1, {})
    try:
        busy = httpx.get(f"{proc.url}/api/logs?limit=1", headers=operator_auth, timeout=30)
        assert busy.status_code == 429
        assert busy.json() == {"error": busy.json()["error"]} and "\n" not in busy.text.strip()
        assert "PORTAL_HEAVY_QUERIES_PER_USER=1" in busy.json()["error"]
        other = httpx.get(f"{proc.url}/api/logs?limit=1", timeout=30)  # anonymous viewer
        assert other.status_code == 200
    finally:
        held.close()
    again = httpx.get(f"{proc.url}/api/logs?limit=1", headers=operator_auth, timeout=30)
    assert again.status_code == 200


def test_a_query_whose_client_left_is_cancelled(
    portal: tuple[PortalProcess, Path], operator_auth: dict[str, str], database_url: str
) -> None:
    proc, _ = portal
    host = f"slow-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_engine.libpq_dsn(database_url)) as conn:
        for i in range(50):
            conn.execute(
                "INSERT INTO log_lines (time, host, component, level, message, labels) "
                "VALUES (%s, %s, 'c', 'INFO', %s, '{}')",
                (datetime.now(UTC), host, "abcdefghij" * 30 + str(i)),
            )
    target = "/api/logs?" + urlencode({"host": host, "re": "1", "grep": SLOW})
    addr, port = proc.url.removeprefix("http://").split(":")
    client = socket.create_connection((addr, int(port)), timeout=10)
    try:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {addr}:{port}\r\n"
            f"Authorization: {operator_auth['Authorization']}\r\n\r\n"
        )
        client.sendall(request.encode())
        assert wait_until(lambda: running(database_url) > 0, 60), "the slow search never started"
    finally:
        client.close()  # the client leaves while PostgreSQL is still searching
    try:
        assert wait_until(lambda: running(database_url) == 0, 60, interval=0.2), (
            "the search kept running after its client left"
        )
        # its slot was freed with it: the same user may search again
        again = httpx.get(f"{proc.url}/api/logs?limit=1", headers=operator_auth, timeout=30)
        assert again.status_code == 200
    finally:
        with psycopg.connect(db_engine.libpq_dsn(database_url)) as conn:
            conn.execute(RUNNING.replace("count(*)", "pg_cancel_backend(pid)"))
