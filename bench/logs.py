#!/usr/bin/env python3
"""Log store: ingest through the real shipper, then host + component + 1 h queries vs grep.

Self-contained: uses PORTAL_DATABASE_URL's server (default 127.0.0.1:5432) with a throwaway
database it drops at the end. Writes N realistic lines (many hosts and components, JSON and
logfmt, a day of traffic) to per-host files, ships them with ``portal collect logs --once``
processes, then times random ``host + component + 1 h window`` queries against ``grep -c`` over
the same lines in one plain text file (store format), checking both count the same lines.
The ingest baseline: the stored (parsed) rows read back, the table emptied, and the same rows
written again by raw COPY in as many parallel streams as there were shippers: what the machine
allows for these rows, without reading, parsing or spooling.
Last line: RESULT ingest_lines_per_s=... query_p50_ms=... query_p95_ms=... grep_p50_ms=...
speedup_vs_grep=... copy_lines_per_s=... ingest_vs_copy=...
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate, timeseries  # noqa: E402
from portal.logs import query as lq  # noqa: E402
from portal.logs.format import text_line  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMPONENTS = [
    "l1-beam",
    "l1-rfi",
    "l1-dedisp",
    "hhat-daily",
    "hhat-monthly",
    "hhat-cumulative",
    "storage",
    "transfer",
    "collector",
    "scheduler",
    "prometheus",
    "postgres",
]
LEVELS = ["INFO"] * 80 + ["DEBUG"] * 10 + ["WARNING"] * 7 + ["ERROR"] * 2 + ["CRITICAL"]


def message(rng: random.Random, comp: str, i: int) -> str:
    b = rng.randrange(16)
    if comp == "l1-beam":
        if rng.random() < 0.1:
            return f"dropped {rng.randrange(1, 5000)} packets on beam {b}: ring buffer full"
        return f"beam {b} received {rng.randrange(10**6)} packets, lost {rng.randrange(50)}"
    if comp == "l1-rfi":
        return f"beam {b}: masked {rng.random() * 30:.1f}% of channels as RFI"
    if comp == "l1-dedisp":
        return f"beam {b}: DM adjusted to {rng.random() * 2000:.2f} pc/cm^3"
    if comp.startswith("hhat"):
        return f"stack {i % 997} processed in {rng.random() * 90:.1f}s, {rng.randrange(40)} cands"
    if comp == "storage":
        return f"mount /data{rng.randrange(8)} at {rng.randrange(100)}% capacity"
    if comp == "transfer":
        return f"rsync of l1/{i % 5000} to site {rng.choice('ABC')} done: {rng.random():.2f} GB"
    return f"{comp} heartbeat {i} ok, queue={rng.randrange(100)}"


def generate(
    root: Path, n: int, hosts: int, hours: float, shippers: int
) -> tuple[Path, dt.datetime]:
    """Per-host log files (split into one folder per shipper) and the same lines as plain text."""
    rng = random.Random(5)
    names = [f"cn{h:03d}" for h in range(1, hosts + 1)]
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(hours=hours)
    step = hours * 3600 / n
    files = {}
    for k, name in enumerate(names):
        folder = root / f"part{k % shippers}"
        folder.mkdir(parents=True, exist_ok=True)
        files[name] = open(folder / f"{name}.log", "w", buffering=1 << 20)  # noqa: SIM115
    plain_path = root / "all.log"
    with open(plain_path, "w", buffering=1 << 20) as plain:
        base = start.timestamp()
        for i in range(n):
            when = dt.datetime.fromtimestamp(base + i * step, dt.UTC)
            host = rng.choice(names)
            comp = rng.choice(COMPONENTS)
            level = rng.choice(LEVELS)
            msg = message(rng, comp, i)
            iso = when.isoformat().replace("+00:00", "Z")
            if i % 2:
                obj = {"time": iso, "level": level.lower(), "host": host, "component": comp}
                line = json.dumps({**obj, "msg": msg})
            else:
                line = f'ts={iso} level={level} host={host} component={comp} msg="{msg}"'
            files[host].write(line + "\n")
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            plain.write(text_line(lq.Record(stamp, host, comp, level, msg, "", None, None)))
    for fh in files.values():
        fh.close()
    return plain_path, start


def ingest(url: str, root: Path, shippers: int) -> float:
    """Run the shippers in parallel to completion; seconds of wall time."""
    procs = []
    t0 = time.perf_counter()
    for k in range(shippers):
        env = {
            **os.environ,
            "PORTAL_DATABASE_URL": url,
            "PORTAL_DATA_DIR": str(root / f"var{k}"),
            "PORTAL_LOG_LEVEL": "WARNING",
        }
        cmd = [sys.executable, "-m", "portal", "collect", "logs", "--once", "--poll", "0.05"]
        # the files gather many hosts' lines: each record names its host and component
        cmd += ["--source", f"{root / f'part{k}' / '*.log'};record=host+component"]
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO))
    codes = [p.wait() for p in procs]
    assert codes == [0] * shippers, f"shipper exit codes {codes}"
    return time.perf_counter() - t0


LOG_COLUMNS = "time, host, component, level, message, labels, source, seq"


def copy_baseline(url: str, streams: int) -> tuple[int, float]:
    """Read the stored rows back, empty the table, COPY them in again in ``streams`` parallel
    connections; (rows, seconds of the COPY alone)."""
    dsn = db_engine.libpq_dsn(url)
    buf = io.BytesIO()
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cur,
        cur.copy(f"COPY (SELECT {LOG_COLUMNS} FROM log_lines) TO STDOUT") as copy,
    ):
        for data in copy:
            buf.write(data)
    lines = buf.getvalue().splitlines(keepends=True)  # text COPY escapes newlines in values
    del buf
    chunks = [b"".join(lines[k::streams]) for k in range(streams)]
    del lines
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE log_lines")
    errors: list[BaseException] = []

    def load(chunk: bytes) -> None:
        try:
            with (
                psycopg.connect(dsn) as conn,
                conn.cursor() as cur,
                cur.copy(f"COPY log_lines ({LOG_COLUMNS}) FROM STDIN") as copy,
            ):
                for start in range(0, len(chunk), 1 << 20):
                    copy.write(chunk[start : start + (1 << 20)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(c,)) for c in chunks]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM log_lines").fetchone()
    return (int(row[0]) if row else 0), seconds


def grep_count(plain: Path, host: str, comp: str, hour: dt.datetime) -> tuple[int, float]:
    pattern = f"^{hour:%Y-%m-%dT%H}:[0-9:.]*Z {host} {comp} "
    t0 = time.perf_counter()
    out = subprocess.run(["grep", "-c", "-E", pattern, str(plain)], capture_output=True, text=True)
    return int(out.stdout.strip() or 0), time.perf_counter() - t0


def store_count(url: str, host: str, comp: str, hour: dt.datetime) -> tuple[int, float]:
    q = lq.LogQuery(
        hosts=(host,), components=(comp,), since=hour, until=hour + dt.timedelta(hours=1)
    )
    t0 = time.perf_counter()
    n = sum(1 for rec in lq.stream(url, q) if text_line(rec))  # formatted, as the CLI does
    return n, time.perf_counter() - t0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=10_000_000, help="2000000 for a quick run")
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--shippers", type=int, default=2, help="parallel shipper processes")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--grep-queries", type=int, default=10)
    args = ap.parse_args()

    server = os.environ.get("PORTAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
    url = (
        make_url(db_engine.sqlalchemy_url(server))
        .set(drivername="postgresql", database=f"obsportal_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    root = Path(tempfile.mkdtemp(prefix="obsportal-bench-logs-"))
    print(
        f"lines: {args.lines:,}  hosts: {args.hosts}  components: {len(COMPONENTS)}  "
        f"database: {make_url(url).database}",
        flush=True,
    )
    try:
        t0 = time.perf_counter()
        plain, start = generate(root, args.lines, args.hosts, args.hours, args.shippers)
        print(
            f"generated files in {time.perf_counter() - t0:.1f} s "
            f"({plain.stat().st_size / 1e6:.0f} MB plain text)",
            flush=True,
        )
        migrate.upgrade(url)
        with db_engine.get_engine(url).begin() as conn:
            timeseries.ensure_partitions(conn, "log_lines", start.date(), dt.date.today())
        seconds = ingest(url, root, args.shippers)
        with psycopg.connect(db_engine.libpq_dsn(url), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM log_lines").fetchone()
            stored = int(row[0]) if row else 0
            conn.execute("ANALYZE log_lines")
        assert stored == args.lines, f"{stored:,} lines stored, {args.lines:,} written"
        rate = args.lines / seconds
        print(
            f"ingest: {args.lines:,} lines in {seconds:.1f} s = {rate:,.0f} lines/s "
            f"({args.shippers} shipper processes, durable spool, COPY)",
            flush=True,
        )

        rng = random.Random(7)
        picks = [
            (
                f"cn{rng.randrange(1, args.hosts + 1):03d}",
                rng.choice(COMPONENTS),
                start + dt.timedelta(hours=rng.randrange(int(args.hours))),
            )
            for _ in range(args.queries)
        ]
        store_s, counts = [], []
        for host, comp, hour in picks:
            n, s = store_count(url, host, comp, hour)
            store_s.append(s)
            counts.append(n)
        grep_s = []
        for (host, comp, hour), n in zip(picks[: args.grep_queries], counts, strict=False):
            gn, s = grep_count(plain, host, comp, hour)
            assert gn == n, f"grep found {gn} lines for {host} {comp} {hour}, the store {n}"
            grep_s.append(s)
        p50, p95 = pct(store_s, 50) * 1000, pct(store_s, 95) * 1000
        g50 = pct(grep_s, 50) * 1000
        print(
            f"query (host + component + 1 h, {statistics.mean(counts):.0f} lines avg): "
            f"p50 {p50:.1f} ms  p95 {p95:.1f} ms over {len(store_s)} queries"
        )
        print(
            f"grep -c over the same lines in one file: p50 {g50:.1f} ms "
            f"over {len(grep_s)} queries (counts agree)"
        )
        copied, copy_s = copy_baseline(url, args.shippers)
        assert copied == args.lines, f"{copied:,} rows copied back, {args.lines:,} stored"
        copy_rate = copied / copy_s
        print(
            f"raw COPY of the same parsed rows into the same table: {copy_rate:,.0f} lines/s "
            f"({args.shippers} parallel streams); ingest reaches {rate / copy_rate:.2f} of it"
        )
        print(
            f"RESULT ingest_lines_per_s={rate:.0f} query_p50_ms={p50:.1f} query_p95_ms={p95:.1f} "
            f"grep_p50_ms={g50:.1f} speedup_vs_grep={g50 / p50:.1f} "
            f"copy_lines_per_s={copy_rate:.0f} ingest_vs_copy={rate / copy_rate:.2f}"
        )
    finally:
        db_engine.drop_database(url)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
