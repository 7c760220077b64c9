#!/usr/bin/env python3
"""Event bus: publish rate of 4 publishers and end-to-end latency to a live subscriber.

Self-contained: a throwaway database on PORTAL_DATABASE_URL's server (dropped at the end).
Each publisher is a process with one connection publishing ``--events`` events as fast as it
can; one subscriber process follows the topic from before the first event and records, for
every event, the time from publish to delivery. Modes: the previous design (one transaction-level
advisory lock, every publisher serialised), one commit per event, ``publish_many`` batches, and
the pipelined publisher (``bus.PipelinedPublisher``: group commit; its clock stops when every
publisher has all its events acknowledged, and its latency includes the wait in its bounded
queue, ``--queued``). Last line: RESULT publish_per_s=... p50_ms=... p99_ms=... single_per_s=...
single_p99_ms=... locked_per_s=... batched_per_s=...; publish_per_s, p50_ms and p99_ms are the
pipelined publisher (every event acknowledged only after its commit), single_* one commit per
event through ``bus.publish``, locked_* the previous design, batched_* ``publish_many``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import make_url  # noqa: E402

from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate  # noqa: E402
from portal.events import bus  # noqa: E402

LOCK_KEY = 0x6F6273  # the advisory lock the previous design took around every publish


def pipelined(url: str, topic: str, n: int, max_queued: int, start: Any) -> None:
    """``n`` events through ``publish_async``; returns once every one is acknowledged."""
    with bus.PipelinedPublisher(url, max_batch=max_queued, max_queued=max_queued) as pub:
        start.wait()
        futures = [pub.publish_async(topic, {"sent": time.time()}) for _ in range(n)]
        pub.flush()
    failed = [err for f in futures if (err := f.exception()) is not None]
    if failed:
        raise SystemExit(f"{len(failed)} of {n} events failed: {failed[0]}")


def publisher(url: str, topic: str, n: int, mode: str, batch: int, start: Any) -> None:
    """``n`` events: ``locked`` (the old design), ``single`` (one transaction each), ``batch``
    (``batch`` events a transaction through ``publish_many``) or ``pipelined`` (``batch`` is
    the pipelined publisher's queue bound and largest transaction)."""
    if mode == "pipelined":
        return pipelined(url, topic, n, batch, start)
    conn = db_engine.connect_raw(url, autocommit=True)
    start.wait()
    done = 0
    while done < n:
        if mode == "locked":
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                conn.execute(
                    "INSERT INTO events (topic, payload) VALUES (%s, %s::jsonb)",
                    (topic, json.dumps({"sent": time.time()})),
                )
                conn.execute("SELECT pg_notify(%s, %s)", (bus.CHANNEL, topic))
            done += 1
        elif mode == "single":
            bus.publish(url, topic, {"sent": time.time()}, conn=conn)
            done += 1
        else:
            k = min(batch, n - done)
            bus.publish_many(url, [(topic, {"sent": time.time()})] * k, conn=conn)
            done += k
    conn.close()


def subscriber(url: str, topic: str, since: int, n: int, out: Connection) -> None:
    lat: list[float] = []
    order_ok = True
    last = since
    with bus.Subscription(url, [topic], since=since) as sub:
        out.send("ready")
        for ev in sub.events(timeout=600):
            lat.append(time.time() - float(ev.payload["sent"]))
            order_ok = order_ok and ev.id > last
            last = ev.id
            if len(lat) == n:
                break
    out.send((lat, order_ok))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(url: str, publishers: int, per: int, mode: str, batch: int) -> tuple[float, list[float]]:
    """(events per second published, delivery latencies in seconds)."""
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    total = publishers * per
    since = bus.last_id(url)
    ctx = mp.get_context("spawn")
    mine, theirs = ctx.Pipe()
    sub = ctx.Process(target=subscriber, args=(url, topic, since, total, theirs))
    sub.start()
    assert mine.recv() == "ready"
    start = ctx.Event()
    procs = [
        ctx.Process(target=publisher, args=(url, topic, per, mode, batch, start))
        for _ in range(publishers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)  # let every publisher connect before the clock starts
    t0 = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - t0
    if not mine.poll(120):
        sub.kill()
        raise SystemExit("the subscriber did not receive every event within 120 s")
    lat, order_ok = mine.recv()
    sub.join()
    if len(lat) != total or not order_ok:
        raise SystemExit(f"subscriber got {len(lat)} of {total} events, in order: {order_ok}")
    return total / seconds, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--events", type=int, default=5000, help="per publisher")
    ap.add_argument("--batch", type=int, default=50, help="events a transaction, batched run")
    ap.add_argument(
        "--queued",
        type=int,
        default=bus.PipelinedPublisher.MAX_QUEUED,
        help="pipelined run: queue bound and largest transaction",
    )
    args = ap.parse_args()
    server = os.environ.get("PORTAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
    url = (
        make_url(db_engine.sqlalchemy_url(server))
        .set(drivername="postgresql", database=f"obsportal_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    try:
        migrate.upgrade(url)
        got = {}
        for name, mode in (
            ("global advisory lock (before)", "locked"),
            ("lock-free, 1 event a commit", "single"),
            (f"lock-free, {args.batch} events a commit", "batch"),
            (f"pipelined, <= {args.queued} a commit", "pipelined"),
        ):
            batch = args.queued if mode == "pipelined" else args.batch
            rate, lat = run(url, args.publishers, args.events, mode, batch)
            got[mode] = (rate, lat)
            print(
                f"{name:32} {rate:9,.0f} events/s  delivery p50 {pct(lat, 50) * 1000:6.1f} ms  "
                f"p99 {pct(lat, 99) * 1000:6.1f} ms  ({args.publishers} publishers x "
                f"{args.events}, 1 subscriber, every event once, in id order)",
                flush=True,
            )
    finally:
        db_engine.drop_database(url)
    rate, lat = got["pipelined"]
    single_rate, single_lat = got["single"]
    print(
        f"RESULT publish_per_s={rate:.0f} p50_ms={pct(lat, 50) * 1000:.1f} "
        f"p99_ms={pct(lat, 99) * 1000:.1f} single_per_s={single_rate:.0f} "
        f"single_p99_ms={pct(single_lat, 99) * 1000:.1f} locked_per_s={got['locked'][0]:.0f} "
        f"batched_per_s={got['batch'][0]:.0f}"
    )


if __name__ == "__main__":
    main()
