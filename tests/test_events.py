"""Events: durable publish, ordered at-least-once delivery across subscriber restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest

from portal.errors import PortalError
from portal.events import bus as events
from tests.conftest import portal_cmd


def _topic() -> str:
    return f"test.{uuid.uuid4().hex[:8]}"


def _read_lines(proc: subprocess.Popen[str], n: int, timeout: float = 30) -> list[dict]:
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while len(out) < n and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            out.append(json.loads(line))
    return out


def test_killed_subscriber_resumes_with_every_event_once_in_order(portal_env: dict) -> None:
    url, topic, name = portal_env["PORTAL_DATABASE_URL"], _topic(), f"sub-{uuid.uuid4().hex[:6]}"
    cmd = portal_cmd("events", "tail", "--topic", topic, "--name", name, "--format", "jsonl")
    first = [events.publish(url, topic, {"n": i}) for i in range(5)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        got = _read_lines(proc, 5)
        assert [e["id"] for e in got] == first
        # wait until the cursor of the last event is stored (it is, once the next is awaited)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with events.connect_raw(url) as conn:
                row = conn.execute(
                    "SELECT last_id FROM event_cursors WHERE name = %s", (name,)
                ).fetchone()
            if row and row[0] == first[-1]:
                break
            time.sleep(0.05)
        assert row is not None and row[0] == first[-1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    meanwhile = [events.publish(url, topic, {"n": i}) for i in range(5, 12)]
    events.publish(url, _topic(), {"other": True})  # another topic: must not be delivered
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        got = _read_lines(proc, 7)
        assert [e["id"] for e in got] == meanwhile
        assert [e["payload"]["n"] for e in got] == list(range(5, 12))
        live = events.publish(url, topic, {"n": 12})
        assert [e["id"] for e in _read_lines(proc, 1)] == [live]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_two_concurrent_subscribers_get_everything(portal_env: dict) -> None:
    url, topic = portal_env["PORTAL_DATABASE_URL"], _topic()
    start = events.last_id(url)
    received: dict[int, list[int]] = {0: [], 1: []}

    def consume(k: int) -> None:
        for ev in events.subscribe(url, [topic], since=start, timeout=20):
            received[k].append(ev.payload["n"])
            if len(received[k]) == 50:
                return

    threads = [threading.Thread(target=consume, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()

    def produce(offset: int) -> None:
        for i in range(25):
            events.publish(url, topic, {"n": offset + i})

    producers = [threading.Thread(target=produce, args=(o,)) for o in (0, 100)]
    for p in producers:
        p.start()
    for t in producers + threads:
        t.join(30)
    for k in (0, 1):
        assert sorted(received[k]) == sorted(list(range(25)) + list(range(100, 125)))
    # both saw the same order, which is id order
    assert received[0] == received[1]


def test_topic_patterns_and_bad_input(portal_env: dict) -> None:
    url = portal_env["PORTAL_DATABASE_URL"]
    base = _topic()
    start = events.last_id(url)
    events.publish(url, f"{base}.ops.reboot", {"host": "cn01"})
    events.publish(url, f"{base}.alert", {"x": 1})
    got = events.history(url, [f"{base}.ops.*"], since=start)
    assert [e.topic for e in got] == [f"{base}.ops.reboot"]
    with pytest.raises(PortalError, match="topic"):
        events.publish(url, "has space", {})
    with pytest.raises(PortalError, match="not JSON"):
        events.publish(url, base, {"x": object()})


def test_follower_survives_a_database_restart() -> None:
    from portal.db import engine as db_engine
    from portal.db import migrate
    from portal.stack import postgres
    from portal.stack.process import wait_until
    from tests.conftest import free_port, shared_tmpdir

    tmp = shared_tmpdir("obsportal-events-restart-")
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/obsportal"
    postgres.start(url, tmp / "data", tmp / "pg.log")
    try:
        migrate.upgrade(url)
        got: list[int] = []
        sub = events.Subscription(
            url, ["restart.*"], since=0, name="restart-test", poll_seconds=0.5
        )

        def follow() -> None:
            for ev in sub.events(timeout=90):
                got.append(ev.payload["n"])
                if len(got) == 6:
                    return

        reader = threading.Thread(target=follow)
        reader.start()
        for i in range(3):
            events.publish(url, "restart.test", {"n": i})
        assert wait_until(lambda: len(got) >= 3, 30)
        assert got == [0, 1, 2]
        db_engine.dispose_all()
        postgres.stop(tmp / "data")  # the database goes away under a live follower
        postgres.start(url, tmp / "data", tmp / "pg.log")
        for i in range(3, 6):
            events.publish(url, "restart.test", {"n": i})
        reader.join(60)
        assert got == [0, 1, 2, 3, 4, 5]
        assert sub.reconnects >= 1
        sub.close()
    finally:
        db_engine.dispose_all()
        postgres.stop(tmp / "data")
