"""The API under load: /healthz from a cached report, the pool's health, no ping per checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import sqlalchemy as sa

from portal.db import engine as db_engine
from portal.settings import Settings
from portal.stack import process
from portal.web import health
from tests.conftest import free_port, shared_tmpdir


def _prometheus(tmp: Path, port: int) -> int:
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    return process.spawn(
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp / "prometheus.log",
    )


def test_healthz_answers_from_the_cache_and_a_backend_coming_up_shows_without_a_probe(
    cfg: Settings,
) -> None:
    port = free_port()
    mine = cfg.replace(prometheus_url=f"http://127.0.0.1:{port}")
    monitor = health.Monitor(mine, refresh_s=0.2, stale_s=3600)
    first = monitor.report()
    assert first["backends"]["prometheus"]["ok"] is False
    assert first["backends"]["database"]["ok"] is True
    assert first["status"] == "degraded"
    tmp = shared_tmpdir("portal-health-")
    pid = _prometheus(tmp, port)
    try:
        # requests never probe now (stale_s is an hour): only the background refresh can see it
        assert process.wait_until(
            lambda: monitor.report()["backends"]["prometheus"]["ok"] is True, 30
        ), process.tail(tmp / "prometheus.log")
    finally:
        process.stop(pid)
        shutil.rmtree(tmp, ignore_errors=True)


def test_an_exhausted_database_pool_is_reported_degraded(cfg: Settings, database_url: str) -> None:
    monitor = health.Monitor(cfg, refresh_s=3600, stale_s=3600)
    engine = db_engine.get_engine(database_url)
    calm = monitor.report()["database_pool"]
    assert (
        calm["saturated"] is False and calm["max"] == db_engine.POOL_SIZE + db_engine.POOL_OVERFLOW
    )
    held = [engine.connect() for _ in range(calm["max"] - calm["in_use"])]
    try:
        busy = monitor.report()
        assert busy["database_pool"]["saturated"] is True
        assert busy["database_pool"]["in_use"] == calm["max"]
        assert busy["status"] == "degraded"
    finally:
        for conn in held:
            conn.close()
    assert monitor.report()["database_pool"]["saturated"] is False


def test_a_pooled_connection_the_server_dropped_is_replaced_without_an_error(
    database_url: str,
) -> None:
    engine = db_engine.get_engine(database_url)
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(db_engine.libpq_dsn(database_url), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        assert process.wait_until(
            lambda: (
                admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                == (0,)
            ),
            10,
        )
    # the pool hands the dropped connection out again only after it noticed the goodbye
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != pid
