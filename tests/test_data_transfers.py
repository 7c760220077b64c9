"""Replication over real SSH + rsync: verified copies, BAD copies re-copied, kill -9 of a
worker mid-copy, an unreachable site turning its rule STUCK with the alert."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from portal.data import catalog, checksum, rules, transfer, verify
from portal.data import metrics as data_metrics
from portal.db.engine import connect_raw
from portal.errors import PortalError
from portal.settings import Settings
from portal.stack import process
from tests.conftest import free_port, portal_cmd
from tests.data_fixtures import make_files, product_records, rows, ssh_site, tag, with_data


def _replicas(url: str, site: str) -> list[tuple[Any, ...]]:
    with connect_raw(url) as conn:
        return conn.execute(
            "SELECT p.name, r.state, r.path, r.checksum, p.checksum FROM replicas r "
            "JOIN data_products p ON p.id = r.product_id WHERE r.site = %s ORDER BY p.name",
            (site,),
        ).fetchall()


def _setup(cfg: Settings, sshd: Any, tmp: Path, count: int, size: int, **site_kw: Any) -> Any:
    t = tag()
    files = make_files(tmp / "src", count, size)
    catalog.store_products(
        cfg.database_url, rows(product_records(files, "hhat_monthly", f"m-{t}", {"t": t}))
    )
    site = ssh_site(cfg, sshd, tmp / "dest", f"cc-{t}", **site_kw)
    rules.add(cfg.database_url, f"rule-{t}", "hhat_monthly", site.name, {"t": t}, 86400)
    return t, files, site


def _drain(worker: transfer.Worker, site: str) -> None:
    while worker.run_once(site):
        pass


def test_copies_are_verified_and_a_bad_copy_is_copied_again(
    cfg: Settings, sshd: Any, tmp_path: Path
) -> None:
    t, files, site = _setup(cfg, sshd, tmp_path, 4, 50_000)
    states = {s.name: s for s in rules.evaluate(cfg)}
    assert states[f"rule-{t}"].state == "REPLICATING" and states[f"rule-{t}"].total == 4
    _drain(transfer.Worker(cfg), site.name)
    got = _replicas(cfg.database_url, site.name)
    assert [r[1] for r in got] == ["AVAILABLE"] * 4
    for name, _state, path, verified, expected in got:
        assert verified == expected == checksum.of_file(Path(path))
        assert Path(path).read_bytes() == (tmp_path / "src" / Path(name).name).read_bytes()
    assert {s.name: s.state for s in rules.evaluate(cfg)}[f"rule-{t}"] == "OK"

    damaged = Path(got[1][2])
    damaged.write_bytes(b"\0" * damaged.stat().st_size)  # same size: only a checksum sees it
    assert verify.site(cfg, site.name) == (4, 1)
    assert [r[1] for r in _replicas(cfg.database_url, site.name)].count("BAD") == 1
    _drain(transfer.Worker(cfg), site.name)
    assert [r[1] for r in _replicas(cfg.database_url, site.name)] == ["AVAILABLE"] * 4
    assert damaged.read_bytes() == files[1].read_bytes()

    ssh_site(cfg, sshd, tmp_path / "dest", site.name, port=free_port())  # the site goes away
    with pytest.raises(PortalError, match="checksum at"):
        verify.site(cfg, site.name)
    assert [r[1] for r in _replicas(cfg.database_url, site.name)] == ["AVAILABLE"] * 4


def test_wrong_checksum_at_destination_is_bad_and_never_available(
    cfg: Settings, sshd: Any, tmp_path: Path
) -> None:
    t = tag()
    files = make_files(tmp_path / "src", 1, 1000)
    record = product_records(files, "hhat_monthly", f"w-{t}", {"t": t})[0]
    record["checksum"] = "sha256:" + "0" * 64  # the catalog disagrees with the file
    catalog.store_products(cfg.database_url, rows([record]))
    site = ssh_site(cfg, sshd, tmp_path / "dest", f"w-{t}")
    rules.add(cfg.database_url, f"w-{t}", "hhat_monthly", site.name, {"t": t}, 86400)
    rules.evaluate(cfg)
    worker = transfer.Worker(with_data(cfg, retry_backoff=3600.0))
    assert worker.run_once(site.name)
    ((_name, state, _p, _c, _e),) = _replicas(cfg.database_url, site.name)
    assert state == "BAD"
    with connect_raw(cfg.database_url) as conn:
        req = conn.execute(
            "SELECT state, error_class, last_error FROM transfer_requests WHERE site = %s",
            (site.name,),
        ).fetchone()
    assert req is not None
    assert req[0] == "QUEUED" and req[1] == "checksum" and "mismatch" in req[2]


def _spawn_worker(env: dict[str, str], site: str, log: Path) -> int:
    return process.spawn([*portal_cmd("data", "worker", "--site", site)], log, env=env)


def test_kill_9_mid_copy_leaves_one_verified_replica_per_product(
    cfg: Settings, sshd: Any, tmp_path: Path, portal_env: dict[str, str]
) -> None:
    t, files, site = _setup(cfg, sshd, tmp_path, 3, 400_000, bwlimit_kbps=100, max_active=3)
    rules.evaluate(cfg)
    env = {**os.environ, **portal_env, "PORTAL_DATA_TRANSFER_LEASE": "2s"}
    pid = _spawn_worker(env, site.name, tmp_path / "w1.log")
    try:

        def copying() -> bool:
            with connect_raw(cfg.database_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM transfer_requests WHERE site = %s "
                    "AND state = 'SUBMITTED' AND bytes_done > 0",
                    (site.name,),
                ).fetchone()
            return bool(row and row[0] > 0)

        assert process.wait_until(copying, 60), process.tail(tmp_path / "w1.log")
    finally:
        os.kill(pid, signal.SIGKILL)
        process.stop(pid, timeout=5)
    assert all(r[1] != "AVAILABLE" for r in _replicas(cfg.database_url, site.name))

    def orphans() -> list[int]:  # rsync dies with its worker (no copy runs on unowned)
        dest = str(tmp_path / "dest")
        found = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = p.info["cmdline"] or []
            if cmd and cmd[0].endswith("rsync") and any(dest in c for c in cmd):
                found.append(p.info["pid"])
        return found

    assert process.wait_until(lambda: not orphans(), 15), orphans()
    ssh_site(cfg, sshd, tmp_path / "dest", site.name, max_active=3)  # lift the bandwidth limit
    pid = _spawn_worker(env, site.name, tmp_path / "w2.log")
    try:

        def all_available() -> bool:
            got = _replicas(cfg.database_url, site.name)
            return len(got) == 3 and all(r[1] == "AVAILABLE" for r in got)

        assert process.wait_until(all_available, 90, interval=0.3), process.tail(
            tmp_path / "w2.log"
        )
    finally:
        process.stop(pid, timeout=10)
    got = _replicas(cfg.database_url, site.name)
    assert len({r[0] for r in got}) == 3  # exactly one replica per product at the site
    for _name, _state, path, verified, expected in got:
        assert verified == expected == checksum.of_file(Path(path))
    finals = sorted(
        p.name
        for p in (tmp_path / "dest").rglob("*")
        if p.is_file() and ".rsync-partial" not in p.parts and not p.name.startswith(".")
    )
    assert finals == sorted(f.name for f in files)


def test_unreachable_site_turns_rule_stuck_with_last_error_and_alert(
    stack: Settings, sshd: Any, tmp_path: Path
) -> None:
    cfg = with_data(stack, stuck_after=1.0, retry_backoff=0.1)
    t = tag()
    files = make_files(tmp_path / "src", 2, 100)
    catalog.store_products(
        cfg.database_url, rows(product_records(files, "hhat_monthly", f"u-{t}", {"t": t}))
    )
    site = ssh_site(cfg, sshd, tmp_path / "dest", f"dead-{t}", port=free_port())
    rules.add(cfg.database_url, f"dead-{t}", "hhat_monthly", site.name, {"t": t}, 86400)
    name = f"dead-{t}"
    assert {s.name: s.state for s in rules.evaluate(cfg)}[name] == "REPLICATING"
    worker = transfer.Worker(cfg)
    assert worker.run_once(site.name)

    def stuck() -> Any:
        found = {s.name: s for s in rules.evaluate(cfg)}[name]
        return found if found.state == "STUCK" else None

    assert process.wait_until(lambda: stuck() is not None, 30)
    state = {s.name: s for s in rules.evaluate(cfg)}[name]
    assert state.last_error and "rsync" in state.last_error
    with connect_raw(cfg.database_url) as conn:
        ev = conn.execute(
            "SELECT payload FROM events WHERE topic = 'data.rule.stuck' AND payload->>'rule' = %s",
            (name,),
        ).fetchone()
    assert ev is not None and ev[0]["last_error"] == state.last_error

    data_metrics.push(cfg, [state])

    def firing() -> list[dict[str, Any]]:
        body = httpx.get(f"{cfg.prometheus_url}/api/v1/alerts", timeout=5).json()
        return [
            a
            for a in body["data"]["alerts"]
            if a["labels"].get("alertname") == "ReplicationRuleStuck"
            and a["labels"].get("rule") == name
            and a["state"] == "firing"
        ]

    assert process.wait_until(lambda: bool(firing()), 60, interval=1)
    assert firing()[0]["labels"]["last_error"] == state.last_error[:200]


def test_max_active_limits_the_workers_copying_to_a_site(
    cfg: Settings, sshd: Any, tmp_path: Path
) -> None:
    t, _files, site = _setup(cfg, sshd, tmp_path, 3, 100, max_active=1)
    rules.evaluate(cfg)
    first, second = transfer.Worker(cfg, f"a-{t}"), transfer.Worker(cfg, f"b-{t}")
    first.BATCH_FILES = second.BATCH_FILES = 1
    assert len(first.claim(site.name)) == 1
    assert second.claim(site.name) == []  # the site's one slot is taken
    ssh_site(cfg, sshd, tmp_path / "dest", site.name, max_active=2)
    assert len(second.claim(site.name)) == 1
    assert transfer.Worker(cfg, f"c-{t}").claim(site.name) == []


def test_evaluator_component_queues_copies_and_pushes_its_gauges(
    stack: Settings, sshd: Any, tmp_path: Path, portal_env: dict[str, str]
) -> None:
    t, _files, site = _setup(stack, sshd, tmp_path, 2, 100)
    env = {**os.environ, **portal_env, "PORTAL_DATA_EVALUATE_INTERVAL": "1s"}
    pid = process.spawn(portal_cmd("data", "evaluate"), tmp_path / "evaluate.log", env=env)
    try:

        def queued() -> bool:
            with connect_raw(stack.database_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM transfer_requests WHERE site = %s AND state = 'QUEUED'",
                    (site.name,),
                ).fetchone()
            return bool(row and row[0] == 2)

        assert process.wait_until(queued, 60), process.tail(tmp_path / "evaluate.log")

        def pushed() -> bool:
            text = httpx.get(f"{stack.pushgateway_url}/metrics", timeout=5).text
            return (
                f'portal_data_rule_missing_copies{{instance="",job="portal-data",rule="rule-{t}"'
                in text
            )

        assert process.wait_until(pushed, 60), process.tail(tmp_path / "evaluate.log")
    finally:
        process.stop(pid, timeout=10)


def test_a_new_product_for_a_rule_complete_long_ago_is_not_stuck(
    cfg: Settings, sshd: Any, tmp_path: Path
) -> None:
    t, files, site = _setup(cfg, sshd, tmp_path, 1, 100)
    rules.evaluate(cfg)
    _drain(transfer.Worker(cfg), site.name)
    assert {s.name: s.state for s in rules.evaluate(cfg)}[f"rule-{t}"] == "OK"
    with connect_raw(cfg.database_url) as conn:  # complete since two days
        conn.execute(
            "UPDATE replication_rules SET progress_at = now() - interval '2 days' WHERE name = %s",
            (f"rule-{t}",),
        )
    assert {s.name: s.state for s in rules.evaluate(cfg)}[f"rule-{t}"] == "OK"  # a pass, complete
    (new,) = make_files(tmp_path / "later", 1, 100)
    catalog.store_products(
        cfg.database_url, rows(product_records([new], "hhat_monthly", f"m-{t}-2", {"t": t}))
    )
    late = with_data(cfg, stuck_after=3600.0)
    state = {s.name: s for s in rules.evaluate(late)}[f"rule-{t}"]
    assert (state.state, state.done, state.total) == ("REPLICATING", 1, 2)


def test_a_mounted_archive_site_is_copied_to_and_verified(cfg: Settings, tmp_path: Path) -> None:
    from portal.data import sites

    t = tag()
    files = make_files(tmp_path / "src", 3, 2000)
    catalog.store_products(
        cfg.database_url, rows(product_records(files, "hhat_monthly", f"f-{t}", {"t": t}))
    )
    site = sites.Site(f"mounted-{t}", f"file://{tmp_path / 'archive'}")
    sites.save(cfg.database_url, site)
    rules.add(cfg.database_url, f"f-{t}", "hhat_monthly", site.name, {"t": t}, 86400)
    rules.evaluate(cfg)
    _drain(transfer.Worker(cfg), site.name)
    got = _replicas(cfg.database_url, site.name)
    assert [r[1] for r in got] == ["AVAILABLE"] * 3
    assert all(
        Path(r[2]).read_bytes() == (tmp_path / "src" / Path(r[0]).name).read_bytes() for r in got
    )
