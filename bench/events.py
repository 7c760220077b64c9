#!/usr/bin/env python3
"""Event bus: publish rate of 4 publishers and end-to-end latency to a live subscriber.

Self-contained: a throwaway database on PORTAL_DATABASE_URL's server (dropped at the end).
Each publisher is a process with one connection publishing ``--events`` events as fast as it
can; one subscriber process follows the topic from before the first event and records, for
every event, the time from publish to delivery. Modes: the previous design (one transaction-level
advisory lock, every publisher serialised), one commit per event, ``publish_many`` batches, and
the pipelined publisher (``bus.PipelinedPublisher``: group commit; its latency includes the wait
in its bounded queue, ``--queued``). The clock stops when every publisher has its last event
stored (acknowledged), before the processes exit.

Latency at full speed is mostly queueing (a publisher faster than the database keeps its queue
full), so delivery latency is measured as well at a steady offered load, ``--rate`` events a
second in all (the target rate), each publisher sending on a fixed schedule through the
pipelined publisher (a batch may wait ``--linger-ms``, 2 ms, for more events: fewer commits for
the same events, as Kafka's ``linger.ms``). Each event carries its scheduled time, not the
time it was sent: a publisher that falls behind its schedule counts the delay (no coordinated
omission).

Last line: RESULT publish_per_s=... p50_ms=... p99_ms=... paced_per_s=... saturated_p99_ms=...
single_per_s=... single_p99_ms=... locked_per_s=... batched_per_s=...; publish_per_s is the
pipelined publisher at full speed (every event acknowledged only after its commit), p50_ms and
p99_ms the delivery latency at ``--rate`` (paced_per_s the rate achieved), saturated_p99_ms the
latency at full speed, single_* one commit per event through ``bus.publish``, locked_* the
previous design, batched_* ``publish_many``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import uuid
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import make_url  # noqa: E402

from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate  # noqa: E402
from portal.events import bus  # noqa: E402

LOCK_KEY = 0x6F6273  # the advisory lock the previous design took around every publish


def watch(future: Future[int], failed: list[BaseException]) -> None:
    """Note the event's failure, if any, without keeping its future: holding every future
    would grow the heap until the garbage collector's full passes stall the publisher."""
    future.add_done_callback(lambda f: (err := f.exception()) is None or failed.append(err))


def pipelined(
    url: str,
    topic: str,
    n: int,
    options: dict[str, Any],
    rate: float | None,
    start: Any,
    finished: Any,
) -> None:
    """``n`` events through ``publish_async`` of a ``PipelinedPublisher(url, **options)``: as
    fast as it takes them, or at ``rate`` a second, each then stamped with the time it was due
    (a late publisher counts its lateness). Returns once every one is acknowledged."""
    failed: list[BaseException] = []
    with bus.PipelinedPublisher(url, **options) as pub:
        start.wait()
        t0 = time.time()
        for i in range(n):
            if rate is None:
                sent = time.time()
            else:
                sent = t0 + i / rate
                ahead = sent - time.time()
                if ahead > 0.001:
                    time.sleep(ahead)
            watch(pub.publish_async(topic, {"sent": sent}), failed)
        pub.flush()
        finished.put(time.time())
    if failed:
        raise SystemExit(f"{len(failed)} of {n} events failed: {failed[0]}")


def publisher(
    url: str, topic: str, n: int, mode: str, batch: int, linger_s: float, start: Any, finished: Any
) -> None:
    """``n`` events: ``locked`` (the old design), ``single`` (one transaction each), ``batch``
    (``batch`` events a transaction through ``publish_many``), ``pipelined`` (``batch`` is
    the pipelined publisher's queue bound and largest transaction) or ``paced`` (``batch``
    events a second). Puts the time its last event was stored on ``finished``."""
    if mode == "paced":
        return pipelined(url, topic, n, {"linger_s": linger_s}, batch, start, finished)
    if mode == "pipelined":
        options = {"max_batch": batch, "max_queued": batch}
        return pipelined(url, topic, n, options, None, start, finished)
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
    finished.put(time.time())
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


def run(
    url: str, publishers: int, per: int, mode: str, batch: int, linger_s: float = 0.0
) -> tuple[float, list[float]]:
    """(events per second published, delivery latencies in seconds). The clock runs from the
    start signal to the last publisher's last acknowledgement (process exits excluded)."""
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    total = publishers * per
    since = bus.last_id(url)
    ctx = mp.get_context("spawn")
    mine, theirs = ctx.Pipe()
    sub = ctx.Process(target=subscriber, args=(url, topic, since, total, theirs))
    sub.start()
    assert mine.recv() == "ready"
    # every publisher imported and set up before the clock starts
    start, finished = ctx.Barrier(publishers + 1, timeout=120), ctx.Queue()
    procs = [
        ctx.Process(
            target=publisher, args=(url, topic, per, mode, batch, linger_s, start, finished)
        )
        for _ in range(publishers)
    ]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.time()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit(f"a {mode} publisher failed")
    seconds = max(finished.get(timeout=10) for _ in procs) - t0
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
        "--rate", type=int, default=10_000, help="paced run: events a second, all publishers"
    )
    ap.add_argument(
        "--linger-ms",
        type=float,
        default=2.0,
        help="paced run: how long a batch may wait for more events (PipelinedPublisher linger_s)",
    )
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
            (f"pipelined, paced at {args.rate:,}/s", "paced"),
        ):
            batch = {"pipelined": args.queued, "paced": args.rate // args.publishers}
            rate, lat = run(
                url,
                args.publishers,
                args.events,
                mode,
                batch.get(mode, args.batch),
                args.linger_ms / 1000 if mode == "paced" else 0.0,
            )
            got[mode] = (rate, lat)
            print(
                f"{name:32} {rate:9,.0f} events/s  delivery p50 {pct(lat, 50) * 1000:6.1f} ms  "
                f"p99 {pct(lat, 99) * 1000:6.1f} ms  ({args.publishers} publishers x "
                f"{args.events}, 1 subscriber, every event once, in id order)",
                flush=True,
            )
    finally:
        db_engine.drop_database(url)
    rate, full_lat = got["pipelined"]
    paced_rate, lat = got["paced"]
    single_rate, single_lat = got["single"]
    print(
        f"RESULT publish_per_s={rate:.0f} p50_ms={pct(lat, 50) * 1000:.1f} "
        f"p99_ms={pct(lat, 99) * 1000:.1f} paced_per_s={paced_rate:.0f} "
        f"saturated_p99_ms={pct(full_lat, 99) * 1000:.1f} single_per_s={single_rate:.0f} "
        f"single_p99_ms={pct(single_lat, 99) * 1000:.1f} locked_per_s={got['locked'][0]:.0f} "
        f"batched_per_s={got['batch'][0]:.0f}"
    )


if __name__ == "__main__":
    main()
