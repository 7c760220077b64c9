"""Safe deletion with a veto window (real SSH), and storage accounting against the seed's rates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from portal.auth.identity import Identity
from portal.data import accounting, catalog, deletion, rules, sites, transfer
from portal.db.engine import connect_raw
from portal.errors import PortalError
from portal.settings import Settings
from tests.conftest import run_portal
from tests.data_fixtures import make_files, product_records, rows, ssh_site, tag, with_data

WHO = Identity("tester", "user", "operator", address="127.0.0.1")
TB, PB = 10**12, 10**15


def _audit(url: str, target: str) -> list[tuple[str, str]]:
    with connect_raw(url) as conn:
        return conn.execute(
            "SELECT action, outcome FROM audit_log WHERE target = %s ORDER BY id", (target,)
        ).fetchall()


def test_deletion_refused_vetoed_then_done_and_audited(
    cfg: Settings, sshd: Any, tmp_path: Path
) -> None:
    t = tag()
    (src,) = make_files(tmp_path / "src", 1, 5000)
    (record,) = product_records([src], "hhat_monthly", f"d-{t}", {"t": t})
    catalog.store_products(cfg.database_url, rows([record]))
    name = record["name"]
    site = ssh_site(cfg, sshd, tmp_path / "dest", f"del-{t}")

    with pytest.raises(PortalError, match="has no copy at site"):
        deletion.announce(cfg, WHO, name, site.name, "cleanup")
    rules.add(cfg.database_url, f"d-{t}", "hhat_monthly", site.name, {"t": t}, 86400)
    rules.evaluate(cfg)
    while transfer.Worker(cfg).run_once(site.name):
        pass
    copy = tmp_path / "dest" / name
    assert copy.read_bytes() == src.read_bytes()

    # the rule still needs the remote copy; the origin copy may not go while it is the only other
    with pytest.raises(PortalError, match=f"replication rule d-{t} needs a copy"):
        deletion.announce(cfg, WHO, name, site.name, "cleanup")
    rules.set_suspended(cfg.database_url, f"d-{t}", True)

    now = with_data(cfg, veto_window=0.0)
    first = deletion.announce(now, WHO, name, site.name, "space")
    with pytest.raises(PortalError, match=f"announced already \\(deletion {first}\\)"):
        deletion.announce(now, WHO, name, site.name, "space")
    with pytest.raises(PortalError, match="the copy at local is the only verified copy"):
        # with the remote copy BEING_DELETED, the origin is the last verified copy
        deletion.announce(now, WHO, name, "local", "space")
    deletion.veto(now, WHO, first, "still needed by the timing group")
    assert deletion.run_due(now) == 0
    assert copy.exists()
    second = deletion.announce(now, WHO, name, site.name, "space")
    assert deletion.run_due(now) == 1
    assert not copy.exists()
    with connect_raw(cfg.database_url) as conn:
        states: dict[int, str] = dict(
            conn.execute(
                "SELECT id, state FROM data_deletions WHERE id IN (%s, %s)", (first, second)
            ).fetchall()
        )
        left = conn.execute(
            "SELECT count(*) FROM replicas r JOIN data_products p ON p.id = r.product_id "
            "WHERE p.name = %s",
            (name,),
        ).fetchone()
    assert states == {first: "VETOED", second: "DONE"} and left == (0,)
    with pytest.raises(PortalError, match="only verified copy"):
        deletion.announce(now, WHO, name, "local", "space")
    target = f"{name}@{site.name}"
    assert _audit(cfg.database_url, target) == [
        ("data.delete", "refused"),
        ("data.delete", "ok"),
        ("data.delete.veto", "ok"),
        ("data.delete", "ok"),
        ("data.delete.done", "ok"),
    ]
    assert _audit(cfg.database_url, f"{name}@local") == [("data.delete", "refused")] * 2


def test_veto_from_the_cli_and_refusal_is_one_line(cfg: Settings) -> None:
    missing = run_portal("data", "veto", "999999999", "--reason", "x")
    assert missing.returncode != 0 and "no deletion 999999999" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_days_until_full_matches_the_arithmetic_with_the_seeds_rates(cfg: Settings) -> None:
    t = tag()
    site = f"fs-{t}"
    sites.save(cfg.database_url, sites.Site(site, f"file:///tmp/{t}", capacity_bytes=2 * PB))
    now = datetime.now(UTC)
    old = now - timedelta(days=3)

    def product(kind: str, size: int, when: datetime, i: int) -> dict[str, Any]:
        return {
            "kind": kind,
            "name": f"acc-{t}/{kind}/{i}",
            "path": f"/data/{i}",
            "size_bytes": size,
            "created_at": when.isoformat(),
            "site": site,
        }

    records = [product("hhat_cumulative", PB, old, 0)]  # 1 PB stored before the window
    # one day at the seed's rates: L1 45 TB/day and RFI masks 3.7 TB/day, in 24 hourly files
    for h in range(24):
        when = now - timedelta(hours=h, minutes=30)
        records.append(product("l1", 45 * TB // 24, when, 100 + h))
        records.append(product("rfi", int(3.7 * TB) // 24, when, 200 + h))
    catalog.store_products(cfg.database_url, rows(records, site))

    (fc,) = [f for f in accounting.forecast(cfg) if f.site == site]
    rate = 24 * (45 * TB // 24) + 24 * (int(3.7 * TB) // 24)
    used = PB + rate
    assert fc.used_bytes == used
    assert fc.rate_bytes_per_day == pytest.approx(rate)
    assert fc.days_until_full == pytest.approx((2 * PB - used) / rate)
    assert 19.0 < (fc.days_until_full or 0) < 19.6  # (2 PB - 1.0487 PB) / 48.7 TB/day
    assert accounting.days_until_full(100, 40, 0) is None
    by_kind: dict[str, int] = {}
    for r in accounting.bytes_by(cfg.database_url):
        if r["site"] == site:  # a day's arrivals may straddle midnight: two rows
            by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + r["bytes"]
    assert by_kind["l1"] == 24 * (45 * TB // 24)
    budgets = {b["kind"]: b for b in accounting.budgets(cfg)}
    assert budgets["l1"]["budget_bytes"] == 45 * TB and budgets["l1"]["per_day"]
    assert budgets["hhat_monthly"]["budget_bytes"] == 1.1 * PB
    out = run_portal("data", "storage", check=True).stdout
    assert f"site {site}" in out and "full in 19." in out


def test_site_checksums_use_openssl_or_fall_back_to_coreutils(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import shutil

    (tmp_path / "a").write_bytes(b"stack")
    site = sites.Site("local-check", f"file://{tmp_path}")
    want = "sha256:" + hashlib.sha256(b"stack").hexdigest()
    paths = [str(tmp_path / "a"), str(tmp_path / "missing")]
    assert site.checksums(paths, "sha256") == {paths[0]: want}
    only = tmp_path / "bin"
    only.mkdir()
    (only / "sha256sum").symlink_to(shutil.which("sha256sum") or "/usr/bin/sha256sum")
    monkeypatch.setenv("PATH", str(only))  # no openssl on this "site"
    assert site.checksums(paths, "sha256") == {paths[0]: want}
    assert site.checksum(paths[0], "sha256") == want
    with pytest.raises(PortalError, match="missing or unreadable"):
        site.checksum(paths[1], "sha256")


def test_retention_proposes_old_copies_that_may_go_once(cfg: Settings) -> None:
    from portal.data import retention
    from portal.data.settings import parse_policies

    t = tag()
    origin = f"ret-{t}"
    old = datetime.now(UTC) - timedelta(days=40)

    def product(i: int, when: datetime) -> dict[str, Any]:
        return {
            "kind": "l1",
            "name": f"ret-{t}/{i}",
            "path": f"/nonexistent/ret-{t}/{i}",
            "size_bytes": 10,
            "created_at": when.isoformat(),
            "site": origin,
            "retention": "short",
        }

    records = [product(1, old), product(2, old), product(3, datetime.now(UTC))]
    catalog.store_products(cfg.database_url, rows(records, origin))
    with connect_raw(cfg.database_url) as conn:
        for i in (1, 3):  # verified copies elsewhere for 1 and 3; none for 2
            conn.execute(
                "INSERT INTO replicas (product_id, site, path, state, verified_at) "
                "SELECT id, 'elsewhere', '/x', 'AVAILABLE', now() FROM data_products "
                "WHERE name = %s",
                (f"ret-{t}/{i}",),
            )
    policy = with_data(cfg, retention={("short", origin): 30 * 86400.0}, veto_window=3600.0)
    assert retention.apply(policy) == 1
    listed = [d for d in deletion.listing(cfg.database_url, 1000) if d["site"] == origin]
    assert [(d["product"], d["state"], d["reason"]) for d in listed] == [
        (f"ret-{t}/1", "ANNOUNCED", f"retention short@{origin}")
    ]
    assert retention.apply(policy) == 0  # announced once
    deletion.veto(policy, WHO, listed[0]["id"], "keep for the pulsar timing campaign")
    assert retention.apply(policy) == 0  # a vetoed copy is not proposed again
    assert _audit(cfg.database_url, f"ret-{t}/2@{origin}") == []  # skipped, not refused
    with pytest.raises(Exception, match="not CLASS@SITE=DURATION"):
        parse_policies("PORTAL_DATA_RETENTION", "short=30d")
