"""Alembic migrations on a fresh database: upgrade, partitions, downgrade to base."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from portal.db import engine as db_engine
from portal.db import migrate, tables, timeseries


@pytest.fixture
def fresh_url(pg_server: str) -> Iterator[str]:
    url = f"{pg_server}/obsportal_mig_{uuid.uuid4().hex[:8]}"
    yield url
    db_engine.drop_database(url)


def test_upgrade_partitions_and_downgrade(fresh_url: str) -> None:
    migrate.upgrade(fresh_url)
    st = migrate.status(fresh_url)
    assert st.head is not None and st.current == st.head
    assert st.backend == "partman"
    today = dt.datetime.now(dt.UTC).date()
    for table in tables.TIMESERIES:
        names = st.partitions[table]
        for ahead in range(0, 4):
            day = today + dt.timedelta(days=ahead)
            assert f"{table}_p{day:%Y_%m_%d}" in names, (table, day, names)
        assert f"{table}_default" in names

    with psycopg.connect(db_engine.libpq_dsn(fresh_url)) as conn:
        far = dt.datetime(2031, 5, 17, tzinfo=dt.UTC)
        conn.execute(
            "INSERT INTO metric_samples (time, host, name, value) VALUES (%s, 'h', 'm', 1)", (far,)
        )
        where = conn.execute("SELECT tableoid::regclass::text FROM metric_samples").fetchone()
        assert where == ("metric_samples_default",)  # a day with no partition still works
        brin = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'metric_samples_time_brin'"
        ).fetchone()
        assert brin == (1,)

    migrate.upgrade(fresh_url)  # idempotent
    migrate.downgrade(fresh_url, "base")
    with psycopg.connect(db_engine.libpq_dsn(fresh_url)) as conn:
        left = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        ).fetchall()
        assert left == []
    assert migrate.status(fresh_url).current is None
    migrate.upgrade(fresh_url)
    assert migrate.status(fresh_url).current == st.head


def test_core_tables_match_migrated_schema(database_url: str) -> None:
    import importlib
    import importlib.util
    import pkgutil

    import portal

    for package in pkgutil.iter_modules(portal.__path__):  # each capability's own tables too
        if package.ispkg and importlib.util.find_spec(f"portal.{package.name}.tables"):
            importlib.import_module(f"portal.{package.name}.tables")
    assert {"ops_runs", "sched_work", "transfer_requests"} <= set(tables.metadata.tables)
    inspector = sa.inspect(db_engine.get_engine(database_url))
    for table in tables.metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name


def test_maintenance_creates_backfill_partitions_and_applies_retention(database_url: str) -> None:
    eng = db_engine.get_engine(database_url)
    day = dt.date.today() - dt.timedelta(days=20)
    with eng.begin() as conn:
        for table in ("pointings", "events"):
            assert timeseries.ensure_partitions(conn, table, day, day) == 1
    assert f"pointings_p{day:%Y_%m_%d}" in migrate.status(database_url).partitions["pointings"]
    migrate.maintain(database_url, {"pointings": 10, "events": 10}, premake_days=7)
    for table in ("pointings", "events"):  # older than retention: dropped
        assert f"{table}_p{day:%Y_%m_%d}" not in migrate.status(database_url).partitions[table]
    names = migrate.status(database_url).partitions["pointings"]
    ahead = dt.date.today() + dt.timedelta(days=7)
    assert f"pointings_p{ahead:%Y_%m_%d}" in names
    migrate.maintain(database_url, {"pointings": 400}, premake_days=7)


def test_timescale_path_ddl() -> None:
    ddl = timeseries.setup_ddl("timescaledb", "metric_samples", 90, 7, "name, host")
    joined = "\n".join(ddl)
    assert "create_hypertable('metric_samples', 'time'" in joined
    assert "timescaledb.compress_segmentby = 'name, host'" in joined
    assert "add_compression_policy('metric_samples'" in joined
    assert "add_retention_policy('metric_samples', INTERVAL '90 days')" in joined
    assert timeseries.partition_clause("timescaledb") == ""
    assert timeseries.extension_ddl("timescaledb") == ["CREATE EXTENSION IF NOT EXISTS timescaledb"]
    plain = timeseries.setup_ddl("plain", "log_lines", 30, 7, "host")
    assert "CREATE TABLE log_lines_default PARTITION OF log_lines DEFAULT" in plain


def test_a_day_whose_rows_wait_in_the_default_partition_still_gets_its_partition(
    database_url: str,
) -> None:
    """A pointing registered for a day before that day had a partition lands in DEFAULT; a
    later backfill of that day moves it into the new partition instead of failing."""
    day = dt.date.today() - dt.timedelta(days=33)
    stamp = dt.datetime.combine(day, dt.time(6), tzinfo=dt.UTC)
    eng = db_engine.get_engine(database_url)
    with eng.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO pointings (time, beam, ra_deg, dec_deg, duration_s) "
                "VALUES (:t, 1023, 10, 20, 600)"
            ),
            {"t": stamp},
        )
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM pointings_default WHERE time = :t"), {"t": stamp}
            ).scalar()
            == 1
        )
    try:
        with eng.begin() as conn:
            assert timeseries.ensure_partitions(conn, "pointings", day, day) == 1
        with eng.begin() as conn:
            where = {"t": stamp}
            child = f"pointings_p{day:%Y_%m_%d}"
            assert (
                conn.execute(
                    sa.text(f"SELECT count(*) FROM {child} WHERE time = :t"), where
                ).scalar()
                == 1
            )
            assert (
                conn.execute(
                    sa.text("SELECT count(*) FROM pointings WHERE time = :t"), where
                ).scalar()
                == 1
            )
    finally:
        with eng.begin() as conn:
            conn.execute(sa.text("DELETE FROM pointings WHERE time = :t"), {"t": stamp})


def activity(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, backend_type, state, wait_event_type, left(query, 80) "
            "FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()


def test_a_migration_killed_half_way_leaves_the_previous_revision_and_runs_again(
    fresh_url: str, tmp_path: Path
) -> None:
    """Power cut during ``portal db upgrade``: 0007 has already moved ``events`` aside when it
    waits for a writer's lock on ``pointings``; the upgrade is killed -9 there. The database is
    still at 0006 with every event in place, and the same command then finishes the job."""
    from portal.stack import process
    from tests.conftest import REPO, portal_cmd

    migrate.upgrade(fresh_url, "0006")
    dsn = db_engine.libpq_dsn(fresh_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(50):
            conn.execute(
                "INSERT INTO events (topic, payload) VALUES ('drill', %s)", (f'{{"n": {i}}}',)
            )
        before = conn.execute("SELECT id, payload FROM events ORDER BY id").fetchall()
    env = {**os.environ, "PORTAL_DATABASE_URL": fresh_url}
    writer = psycopg.connect(dsn)  # a pipeline writer, mid-transaction on pointings
    pid = None
    try:
        writer.execute(
            "INSERT INTO pointings (time, beam, ra_deg, dec_deg, duration_s) "
            "VALUES (now(), 1, 10, 20, 60)"
        )
        pid = process.spawn(portal_cmd("db", "upgrade"), tmp_path / "upgrade.log", REPO, env=env)

        backend: list[int] = []

        def waiting_for_the_lock() -> bool:
            with psycopg.connect(dsn, autocommit=True) as conn:
                backend[:] = [
                    r[0]
                    for r in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND query LIKE '%pointings_summarise%'"
                    )
                ]
            return bool(backend)

        assert process.wait_until(waiting_for_the_lock, 60), process.tail(tmp_path / "upgrade.log")
        os.kill(pid, signal.SIGKILL)
        assert process.wait_until(lambda: not process.alive(pid), 10)
    finally:
        writer.rollback()
        writer.close()
        if pid is not None:
            process.stop(pid, timeout=5)

    def migration_gone() -> bool:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend[0],)
            ).fetchone()
        return row == (0,)

    assert process.wait_until(migration_gone, 30), activity(dsn)  # it saw its client gone
    assert migrate.status(fresh_url).current == "0006"
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT id, payload FROM events ORDER BY id").fetchall() == before
        moved = conn.execute("SELECT to_regclass('events_0001')").fetchone()
        assert moved == (None,)
    again = subprocess.run(
        portal_cmd("db", "upgrade"), env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    st = migrate.status(fresh_url)
    assert st.current == st.head
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT id, payload FROM events ORDER BY id").fetchall() == before
