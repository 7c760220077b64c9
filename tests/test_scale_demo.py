"""The simulator at the telescope's real shape: 1,024 beams, hosts by role, ``--scale full``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from portal.db import engine as db_engine
from portal.db import migrate
from portal.demo import model
from portal.errors import PortalError
from tests.conftest import run_portal


def test_full_scale_is_the_real_instrument() -> None:
    hosts, per_day = model.shape("full")
    compute = [h for h in hosts if h.role == "compute"]
    assert len(compute) == 128 and len([h for h in hosts if h.role == "storage"]) == 16
    beams = [b for h in compute for b in h.beams]
    assert sorted(beams) == list(range(1024))
    assert per_day == 165_537
    assert {h.name for h in hosts} >= {"head01", "batch01", "cn128", "st16"}


def test_beams_and_hosts_by_role_override_the_preset() -> None:
    hosts, _ = model.shape("demo", beams=10, hosts="compute=4,storage=3")
    assert [len(h.beams) for h in hosts if h.role == "compute"] == [3, 3, 3, 1]
    assert sorted(b for h in hosts for b in h.beams) == list(range(10))
    assert len([h for h in hosts if h.role == "storage"]) == 3
    small, _ = model.shape("full", compute_nodes=2, beams_per_node=4, storage_nodes=1)
    assert len(small) == 5 and sum(len(h.beams) for h in small) == 8
    for kwargs, message in [
        ({"hosts": "gpu=2"}, "ROLE one of compute, storage"),
        ({"hosts": "compute=lots"}, "whole number"),
        ({"hosts": "compute=4", "compute_nodes": 8}, "differ"),
        ({"beams": 3, "hosts": "compute=4"}, "fewer than the 4 compute nodes"),
    ]:
        with pytest.raises(PortalError, match=message):
            model.shape("demo", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def fresh_url(pg_server: str) -> Iterator[str]:
    url = f"{pg_server}/obsportal_demoscale_{uuid.uuid4().hex[:8]}"
    migrate.upgrade(url)
    yield url
    db_engine.drop_database(url)


def test_seed_full_scale_a_day_of_pointings_for_every_beam(
    fresh_url: str, portal_env: dict
) -> None:
    env = {"PORTAL_DATABASE_URL": fresh_url}
    bad = run_portal("demo", "seed", "--hosts", "gpu=2", "--days", "1", env=env)
    assert bad.returncode == 2 and "--hosts 'gpu=2'" in bad.stderr
    assert "Traceback" not in bad.stderr
    done = run_portal(
        "demo",
        "seed",
        "--scale",
        "full",
        "--hosts",
        "compute=32,storage=4",
        "--days",
        "1",
        "--step",
        "21600",
        env=env,
        check=True,
        timeout=300,
    )
    assert "pointings" in done.stdout
    with psycopg.connect(db_engine.libpq_dsn(fresh_url)) as conn:
        beams, per_day = conn.execute(
            "SELECT count(DISTINCT beam), count(*) FROM pointings "
            "WHERE time >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' "
            "- INTERVAL '1 day' AND time < date_trunc('day', now() AT TIME ZONE 'UTC') "
            "AT TIME ZONE 'UTC'"
        ).fetchone() or (0, 0)
        summed = conn.execute("SELECT sum(n) FROM pointing_beam_daily").fetchone()
        stored = conn.execute("SELECT count(*) FROM pointings").fetchone()
    assert beams == 1024
    assert abs(per_day - 165_537) <= 2  # yesterday, a whole day at the real rate
    assert summed == stored  # the summaries kept up with the seed's COPY batches
