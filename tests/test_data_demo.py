"""``make run``'s data demo: Hhat monthly stacks registered through the producer API are copied
to a second local site over real SSH by the rule it creates."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest

from portal.data import demo, rules, transfer
from portal.db.engine import connect_raw
from portal.settings import Settings
from portal.stack import process


def _available(url: str) -> list[str]:
    with connect_raw(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT r.path FROM replicas r WHERE r.site = %s AND r.state = 'AVAILABLE'",
                (demo.SITE,),
            )
        ]


def test_demo_rule_copies_hhat_monthly_stacks_over_ssh(cfg: Settings, tmp_path: Path) -> None:
    if demo.missing():
        pytest.skip(demo.missing())
    local = cfg.replace(data_dir=tmp_path / "var")
    stop = threading.Event()
    runner = threading.Thread(target=demo.run, args=(local, stop), kwargs={"every_s": 0.5})
    runner.start()
    worker = transfer.Worker(local)
    try:

        def copied() -> bool:
            rules.evaluate(local)
            worker.run_once(demo.SITE)
            return len(_available(local.database_url)) >= 2 * demo.SKY_POSITIONS

        assert process.wait_until(copied, 60, interval=0.2)
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    archive = tmp_path / "var" / "demo-site" / "archive"
    paths = _available(local.database_url)
    assert all(
        Path(p).is_relative_to(archive) and Path(p).stat().st_size == demo.STACK_BYTES
        for p in paths
    )
    rules.evaluate(local)
    state = {r["name"]: r for r in rules.listing(local.database_url)}[demo.RULE]
    assert state["kind"] == "hhat_monthly" and state["done"] >= 2 * demo.SKY_POSITIONS
    config = str(tmp_path / "var" / "demo-site" / "sshd_config")
    running = [p for p in psutil.process_iter(["cmdline"]) if config in (p.info["cmdline"] or [])]
    assert running == []  # the demo stopped its sshd
