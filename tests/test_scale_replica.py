"""Reads go to a real streaming replica (``PORTAL_DATABASE_READ_URL``), writes to the primary.

With WAL replay paused on the replica, a row written on the primary is invisible to reads that
go to the replica and visible to the primary: the web app's viewer-level reads must not see it
until replay resumes, while an operator's write lands on the primary and succeeds.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path

import psycopg
import sqlalchemy as sa

from portal import quicklook as ql
from portal.auth import tokens
from portal.auth.identity import Identity
from portal.db import engine as db_engine
from portal.db import migrate
from portal.db import tables as t
from portal.db.timeseries import ensure_partitions
from portal.events import bus as events
from portal.settings import Settings
from portal.stack import process
from portal.web.app import create_app
from tests.conftest import shared_tmpdir
from tests.scale_fixtures import ReplicaPair, replica_pair  # noqa: F401  # fixture

ALERT = {
    "version": "4",
    "status": "firing",
    "receiver": "portal",
    "groupLabels": {},
    "commonLabels": {},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HostDown", "host": "cn07"},
            "annotations": {"summary": "Host cn07 is down"},
            "startsAt": "2026-12-01T06:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": "f00dcafe",
        }
    ],
}


def _replay(pair: ReplicaPair, paused: bool) -> None:
    with psycopg.connect(f"{pair.replica}/postgres", autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")


def _log_line(url: str, marker: str) -> None:
    now = dt.datetime.now(dt.UTC)
    with db_engine.get_engine(url).begin() as conn:
        conn.execute(
            sa.insert(t.log_lines),
            [
                dict(
                    time=now,
                    host="cn01",
                    component="l1-beam",
                    level="INFO",
                    message=marker,
                    labels={},
                    source="replica-test",
                    seq=1,
                )
            ],
        )


def test_reads_go_to_the_replica_and_writes_to_the_primary(
    replica_pair: ReplicaPair,  # noqa: F811
    cfg: Settings,
) -> None:
    pair = replica_pair
    name = f"obsportal_replica_{uuid.uuid4().hex[:6]}"
    primary, replica = f"{pair.primary}/{name}", f"{pair.replica}/{name}"
    migrate.upgrade(primary)
    today = dt.date.today()
    with db_engine.get_engine(primary).begin() as conn:
        ensure_partitions(conn, "log_lines", today - dt.timedelta(days=1), today)
    who = Identity("replica-test", "cli", "admin", "local")
    token = tokens.create(primary, who, "replica-operator", "operator")
    assert process.wait_until(lambda: pair.replayed(name), 60)
    tmp: Path = shared_tmpdir("portal-replica-app-")
    mine = cfg.replace(database_url=primary, database_read_url=replica, data_dir=tmp / "var")
    app = create_app(mine)
    client = app.test_client()
    marker = f"only-on-primary-{uuid.uuid4().hex[:8]}"

    _replay(pair, paused=True)
    try:
        _log_line(primary, marker)
        with db_engine.connect_raw(primary) as conn:
            on_primary = conn.execute(
                "SELECT count(*) FROM log_lines WHERE message = %s", (marker,)
            ).fetchone()
        assert on_primary == (1,)
        # a viewer-level read: answered by the replica, which has not replayed the row yet
        resp = client.get("/api/logs", query_string={"grep": marker, "since": "1h"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert marker not in resp.get_data(as_text=True)
        # quicklooks read through the same engine factory, routed the same way
        with db_engine.reading_from(primary, replica), app.test_request_context("/"):
            frame = ql.sql("SELECT count(*) AS n FROM log_lines WHERE message = :m", m=marker)
        assert int(frame["n"][0]) == 0
        # an operator's write succeeds although the replica cannot take writes
        before = events.last_id(primary)
        sent = client.post("/api/alerts", json=ALERT, headers={"Authorization": f"Bearer {token}"})
        assert sent.status_code == 200, sent.get_data(as_text=True)
        assert events.last_id(primary) > before
    finally:
        _replay(pair, paused=False)
    assert process.wait_until(lambda: pair.replayed(name), 60)
    resp = client.get("/api/logs", query_string={"grep": marker, "since": "1h"})
    assert resp.status_code == 200 and marker in resp.get_data(as_text=True)
    # the replica itself refuses writes: nothing the portal sent there was one
    with psycopg.connect(replica) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    health = client.get("/healthz").get_json()
    assert health["backends"]["database_replica"]["ok"] is True
    db_engine.dispose_all()
    shutil.rmtree(tmp, ignore_errors=True)
