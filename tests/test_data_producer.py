"""The producer API on real PostgreSQL: Python (write path), REST (bearer token) and CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from portal.data.producer import Producer
from portal.db.engine import connect_raw
from portal.settings import Settings
from tests.conftest import run_portal
from tests.data_fixtures import make_files, tag

N = 10_000


def _state(url: str, prefix: str) -> list[tuple[Any, ...]]:
    with connect_raw(url) as conn:
        return conn.execute(
            "SELECT id, name, size_bytes, checksum, created_at FROM data_products "
            "WHERE name LIKE %s ORDER BY id",
            (prefix + "/%",),
        ).fetchall()


def _products(prefix: str, kind: str = "l1") -> list[dict[str, Any]]:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        {
            "kind": kind,
            "name": f"{prefix}/{i:05d}",
            "path": f"/data/{prefix}/{i:05d}.fil",
            "size_bytes": 1_000_000 + i,
            "checksum": "sha256:" + f"{i:064x}",
            "time_start": (t0 + timedelta(hours=i)).isoformat(),
            "time_end": (t0 + timedelta(hours=i + 1)).isoformat(),
            "beam": i % 1024,
            "ra_deg": (i * 0.1) % 360,
            "dec_deg": 10.0,
            "metadata": {"candidate": i % 10 == 0},
            "created_at": (t0 + timedelta(hours=i + 1)).isoformat(),
        }
        for i in range(N)
    ]


def test_python_producer_registers_10000_products_once(cfg: Settings) -> None:
    prefix = f"py-{tag()}"
    records = _products(prefix)
    with Producer(cfg, name=f"test-{prefix}") as producer:
        assert producer.register_products(records) == N
        assert producer.flush(60)
        first = _state(cfg.database_url, prefix)
        assert len(first) == N
        producer.register_products(records)  # again: nothing changes
        producer.register_products(records[:10])
        assert producer.flush(60)
    assert _state(cfg.database_url, prefix) == first
    with connect_raw(cfg.database_url) as conn:
        classes = conn.execute(
            "SELECT DISTINCT retention FROM data_products WHERE name LIKE %s", (prefix + "/%",)
        ).fetchall()
    assert classes == [("short",)]  # the l1 kind's retention class
    with pytest.raises(Exception, match="product 0: kind 'nope' is not one of"):
        Producer(cfg).register_products([{**records[0], "kind": "nope"}])


def test_python_producer_pointings_and_dm_adjustments_are_idempotent(cfg: Settings) -> None:
    beam = 90_000 + int(tag()[:4], 16) % 9000
    now = datetime.now(UTC).replace(microsecond=0)
    with Producer(cfg, name=f"test-p{beam}") as producer:
        for _ in range(2):
            producer.register_pointing(
                time=now, beam=beam, ra_deg=83.63, dec_deg=22.01, duration_s=600, max_dm=56.7
            )
            producer.register_beam_event(time=now, beam=beam, kind="dm_adjust", value=56.8)
        assert producer.flush(30)
    with connect_raw(cfg.database_url) as conn:
        got = conn.execute(
            "SELECT (SELECT count(*) FROM pointings WHERE beam = %s), "
            "(SELECT count(*) FROM beam_events WHERE beam = %s AND kind = 'dm_adjust')",
            (beam, beam),
        ).fetchone()
    assert got == (1, 1)


@pytest.fixture(scope="module")
def client(cfg: Settings) -> Any:
    from portal.web.app import create_app

    return create_app(cfg.replace(anonymous="none")).test_client()


def test_rest_registers_10000_products_once_and_searches(
    client: Any, operator_auth: dict[str, str], cfg: Settings
) -> None:
    prefix = f"rest-{tag()}"
    records = _products(prefix, kind="rfi")
    new = 0
    for start in range(0, N, 2500):
        resp = client.post(
            "/api/products", json={"products": records[start : start + 2500]}, headers=operator_auth
        )
        assert resp.status_code == 200, resp.get_json()
        new += resp.get_json()["new"]
    assert new == N
    first = _state(cfg.database_url, prefix)
    assert len(first) == N
    again = client.post("/api/products", json=records[:2500], headers=operator_auth)
    assert again.get_json() == {"accepted": 2500, "new": 0}
    assert _state(cfg.database_url, prefix) == first

    found = client.get(
        f"/api/products?kind=rfi&name={prefix}/*&beam=3&limit=5", headers=operator_auth
    ).get_json()["products"]
    assert [p["name"] for p in found] == [
        f"{prefix}/{i:05d}" for i in (9219, 8195, 7171, 6147, 5123)
    ]
    assert all(p["beam"] == 3 and p["kind"] == "rfi" for p in found) and len(found) == 5


def test_rest_refuses_bad_records_with_one_line_and_stores_none(
    client: Any, operator_auth: dict[str, str], cfg: Settings
) -> None:
    prefix = f"bad-{tag()}"
    records = _products(prefix)[:3]
    records[2]["checksum"] = "sha256:xyz"
    resp = client.post("/api/products", json=records, headers=operator_auth)
    assert resp.status_code == 400
    assert resp.get_json()["error"].startswith("product 2: checksum 'sha256:xyz'")
    assert _state(cfg.database_url, prefix) == []
    escape = {**records[0], "name": f"{prefix}/../../etc/passwd"}
    resp = client.post("/api/products", json=[escape], headers=operator_auth)
    assert resp.status_code == 400 and "'..'" in resp.get_json()["error"]
    assert client.post("/api/products", json=records[:1]).status_code in (401, 403)
    bad = client.get("/api/products?limit=0", headers=operator_auth)
    assert bad.status_code == 400 and "limit" in bad.get_json()["error"]


def test_rest_pointings_and_beam_events(
    client: Any, operator_auth: dict[str, str], cfg: Settings
) -> None:
    beam = 80_000 + int(tag()[:4], 16) % 9000
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    pointing = {"time": now, "beam": beam, "ra_deg": 1.0, "dec_deg": 2.0, "duration_s": 60}
    event = {"time": now, "beam": beam, "kind": "dm_adjust", "value": 12.5}
    for _ in range(2):
        assert (
            client.post("/api/pointings", json=[pointing], headers=operator_auth).status_code == 200
        )
        assert (
            client.post("/api/beam-events", json=[event], headers=operator_auth).status_code == 200
        )
    with connect_raw(cfg.database_url) as conn:
        got = conn.execute(
            "SELECT (SELECT count(*) FROM pointings WHERE beam = %s), "
            "(SELECT value FROM beam_events WHERE beam = %s)",
            (beam, beam),
        ).fetchone()
    assert got == (1, 12.5)


def test_cli_scan_is_resumable_and_register_ls(tmp_path: Path, cfg: Settings) -> None:
    prefix = f"scan-{tag()}/"
    files = make_files(tmp_path / "disk", 30, 2048)
    first = run_portal(
        "data",
        "scan",
        str(tmp_path / "disk"),
        "--kind",
        "hhat_daily",
        "--prefix",
        prefix,
        "--jobs",
        "4",
        check=True,
    )
    assert "30 file(s): 30 registered, 0 already" in first.stdout
    again = run_portal(
        "data",
        "scan",
        str(tmp_path / "disk"),
        "--kind",
        "hhat_daily",
        "--prefix",
        prefix,
        check=True,
    )
    assert "0 registered, 30 already in the catalog" in again.stdout
    extra = tmp_path / "one.dat"
    extra.write_bytes(b"x" * 10)
    reg = run_portal(
        "data",
        "register",
        str(extra),
        "--kind",
        "hhat_monthly",
        "--name",
        f"{prefix}one",
        "--meta",
        "sky=J0534+2200",
        check=True,
    )
    assert "1 new" in reg.stdout
    listed = run_portal("data", "ls", "--name", f"{prefix}*", "--limit", "100", check=True)
    assert len(listed.stdout.splitlines()) == 31
    assert f"{prefix}{files[0].name}" in listed.stdout
    bad = run_portal("data", "scan", str(tmp_path / "nope"), "--kind", "l1")
    assert bad.returncode != 0 and "does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_plugin_declares_a_product_kind(cfg: Settings, tmp_path: Path) -> None:
    from portal.data.kinds import all_kinds

    (tmp_path / "station_kinds.py").write_text(
        "from portal.hookspecs import ProductKind, hookimpl\n\n\n"
        "@hookimpl\n"
        "def register_product_kinds():\n"
        "    return [ProductKind('candidate_plot', 'Candidate diagnostic plot', 'archive')]\n"
    )
    local = cfg.replace(plugins_dir=tmp_path)
    kinds = all_kinds(local)
    assert kinds["candidate_plot"].retention == "archive" and "l1" in kinds
    prefix = f"plot-{tag()}"
    with Producer(local, name=f"test-{prefix}") as producer:
        producer.register_product(
            kind="candidate_plot", name=f"{prefix}/a.png", path="/data/a.png", size_bytes=10
        )
        assert producer.flush(30)
    with connect_raw(cfg.database_url) as conn:
        got = conn.execute(
            "SELECT kind, retention FROM data_products WHERE name = %s", (f"{prefix}/a.png",)
        ).fetchall()
    assert got == [("candidate_plot", "archive")]
    assert "candidate_plot" not in all_kinds(cfg)  # only where the plugin is loaded
