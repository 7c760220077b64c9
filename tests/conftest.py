"""Session fixtures: real PostgreSQL, Prometheus, Pushgateway and Alertmanager.

Each test run gets its own database (on the machine's PostgreSQL at 127.0.0.1:5432 when it
answers, else on a private server it starts), its own free ports and its own data dir, so two
runs never collide. Every process a fixture starts is stopped by PID at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from portal import settings
from portal.db import engine as db_engine
from portal.db import migrate
from portal.stack import manager, postgres

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port bound but never listening while the test runs: a connection is refused at once,
    and no other process can take it meanwhile (a port that is merely free now might be)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def shared_tmpdir(prefix: str) -> Path:
    """A temp dir other users can traverse (the private PostgreSQL runs as ``postgres``)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def portal_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "portal", *args]


def run_portal(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    check: bool = False,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``portal`` CLI in a subprocess with the test environment (``input``: stdin)."""
    result = subprocess.run(
        portal_cmd(*args),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"portal {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


class Alerting(NamedTuple):
    """A real Prometheus notifying a real Alertmanager; the caller stops ``pids``."""

    pids: list[int]
    prom_url: str
    am_url: str


def start_alerting(tmp: Path, rule: dict[str, Any], am_conf: Path) -> Alerting:
    """Prometheus evaluating ``rule`` every second, sending to Alertmanager run with
    ``am_conf``; both answer when this returns (or both are stopped and it fails)."""
    import yaml

    from portal.readiness import http_ready
    from portal.stack import configs, process

    prom_port, am_port = free_port(), free_port()
    prom_url, am_url = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}"
    (tmp / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": rule["alert"], "interval": "1s", "rules": [rule]}]})
    )
    configs.write(
        tmp / "prometheus.yml",
        {
            "global": {"evaluation_interval": "1s", "scrape_interval": "15s"},
            "rule_files": [str(tmp / "rules.yml")],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
            },
        },
    )
    pids = [
        process.spawn(
            [
                shutil.which("prometheus-alertmanager") or "alertmanager",
                f"--config.file={am_conf}",
                f"--storage.path={tmp / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            tmp / "alertmanager.log",
        ),
        process.spawn(
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--rules.alert.resend-delay=1s",  # Alertmanager is discovered after 1st send
            ],
            tmp / "prometheus.log",
        ),
    ]
    if not process.wait_until(lambda: http_ready(am_url) and http_ready(prom_url), 30):
        for pid in pids:
            process.stop(pid, timeout=15)
        raise AssertionError(
            process.tail(tmp / "prometheus.log") + process.tail(tmp / "alertmanager.log")
        )
    return Alerting(pids, prom_url, am_url)


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    path = shared_tmpdir("obsportal-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(session_dir: Path) -> Iterator[str]:
    """URL (without database) of a PostgreSQL server for this run."""
    if db_engine.server_reachable(SYSTEM_PG, timeout=2):
        yield "postgresql://postgres@127.0.0.1:5432"
        return
    port = free_port()
    data = session_dir / "pg"
    url = f"postgresql://postgres@127.0.0.1:{port}"
    postgres.start(url + "/postgres", data, session_dir / "pg.log")
    try:
        yield url
    finally:
        db_engine.dispose_all()
        postgres.stop(data)


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> Iterator[str]:
    """A fresh, migrated database for this run; dropped at the end."""
    url = f"{pg_server}/obsportal_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    migrate.upgrade(url)
    yield url
    db_engine.drop_database(url)


@pytest.fixture(scope="session")
def portal_env(session_dir: Path, database_url: str) -> Iterator[dict[str, str]]:
    """``PORTAL_*`` variables for this run, also exported so subprocesses inherit them."""
    env = {
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_DATA_DIR": str(session_dir / "var"),
        "PORTAL_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_COLLECTOR_PORT": str(free_port()),
        "PORTAL_LOG_LEVEL": "WARNING",
        # pages and reads are open to anonymous viewers here (as in `make run`); the access
        # control tests build apps with PORTAL_ANONYMOUS=none themselves
        "PORTAL_ANONYMOUS": "viewer",
    }
    saved = {k: v for k, v in os.environ.items() if k.startswith("PORTAL_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    settings.get.cache_clear()
    yield env
    for key in env:
        os.environ.pop(key, None)
    os.environ.update(saved)
    settings.get.cache_clear()


@pytest.fixture(scope="session")
def cfg(portal_env: dict[str, str]) -> settings.Settings:
    return settings.load(os.environ)


@pytest.fixture(scope="session")
def stack(cfg: settings.Settings) -> Iterator[settings.Settings]:
    """Real Prometheus, Pushgateway and Alertmanager on this run's ports."""
    manager.up(cfg)
    try:
        yield cfg
    finally:
        manager.down(cfg)


@pytest.fixture(scope="session")
def operator_token(cfg: settings.Settings) -> str:
    """The secret of an operator API token in the session database (``Authorization: Bearer``)."""
    from portal.auth import tokens
    from portal.auth.identity import Identity

    who = Identity("conftest", "cli", "admin", "local")
    return tokens.create(cfg.database_url, who, f"test-operator-{uuid.uuid4().hex[:8]}", "operator")


@pytest.fixture(scope="session")
def operator_auth(operator_token: str) -> dict[str, str]:
    """Headers that authenticate a request as the session's operator token."""
    return {"Authorization": f"Bearer {operator_token}"}


@pytest.fixture
def db_conn(database_url: str) -> Iterator[object]:
    conn = db_engine.connect_raw(database_url)
    yield conn
    conn.close()


# -- portal web --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def web_database_url(pg_server: str) -> Iterator[str]:
    """A database of the page tests' own: their counts must not see other tests' rows."""
    url = f"{pg_server}/obsportal_web_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    migrate.upgrade(url)
    yield url
    db_engine.drop_database(url)


@pytest.fixture(scope="session")
def web_sample_data(web_database_url: str) -> dict[str, object]:
    """A small cluster in the database for page tests: 3 hosts, components, 2 days of pointings.

    Portal processes under test get ``PORTAL_DATABASE_URL=web_sample_data["url"]``.
    """
    database_url = web_database_url
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from portal.db import tables as t
    from portal.db.timeseries import ensure_partitions

    now = datetime.now(UTC).replace(microsecond=0)
    hosts = [("cn01", "compute", "up"), ("cn02", "compute", "up"), ("st01", "storage", "down")]
    with db_engine.get_engine(database_url).begin() as conn:
        for table in ("pointings", "metric_samples"):
            ensure_partitions(conn, table, (now - timedelta(days=8)).date(), now.date())
        conn.execute(
            sa.insert(t.hosts),
            [
                dict(
                    name=n,
                    role=r,
                    address="127.0.0.1",
                    collector_port=9105,
                    state=s,
                    labels={},
                    created_at=now,
                    updated_at=now,
                )
                for n, r, s in hosts
            ],
        )
        conn.execute(
            sa.insert(t.components),
            [
                dict(
                    name=name,
                    host=host,
                    kind=kind,
                    desired_state="running",
                    labels={},
                    created_at=now,
                )
                for name, host, kind in [
                    ("l1-beam0", "cn01", "real-time"),
                    ("l1-beam1", "cn02", "real-time"),
                    ("hhat-worker", "cn01", "batch"),
                    ("hhat-worker", "cn02", "batch"),
                ]
            ],
        )
        conn.execute(
            sa.insert(t.pointings),
            [
                dict(
                    time=now - timedelta(minutes=10 * i),
                    beam=i % 4,
                    ra_deg=(i * 7.3) % 360,
                    dec_deg=((i * 3.1) % 150) - 60,
                    duration_s=600,
                    rfi_fraction=(i % 10) / 10,
                    data_bytes=10**9,
                    max_dm=50 + (i * 13) % 900,
                    n_candidates=i % 7,
                    flags={},
                )
                for i in range(6 * 24 * 2)
            ],
        )
        conn.execute(
            sa.insert(t.metric_samples),
            [
                dict(
                    time=now - timedelta(minutes=i),
                    host="cn01",
                    component="",
                    name="obs_host_cpu_usage_ratio",
                    labels={"cpu": "total"},
                    value=0.2 + (i % 5) / 10,
                )
                for i in range(120)
            ],
        )
    from portal.events import bus as events

    for topic in ("ops.host.down", "transfer.done", "alert.firing"):
        events.publish(database_url, topic, {"host": "st01"}, source="test")
    return {"hosts": [h[0] for h in hosts], "now": now, "url": database_url}


# -- SSH ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sshd(session_dir: Path) -> Iterator[Any]:
    """A real OpenSSH server on 127.0.0.1 (``tests/sshd.py``), stopped by PID at the end."""
    from portal.stack import process
    from tests import sshd as sshd_server

    if not sshd_server.available():
        pytest.skip("openssh-server is not installed (make system-packages)")
    server = sshd_server.start(session_dir / "sshd", free_port())
    try:
        yield server
    finally:
        process.stop(server.pid, timeout=10)
