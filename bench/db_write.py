#!/usr/bin/env python3
"""Write path vs raw COPY vs executemany INSERT, on the same metric rows, in the same run.

Self-contained: uses PORTAL_DATABASE_URL's server (default 127.0.0.1:5432), creates a throwaway
database, migrates it, writes N rows three ways (truncating in between), drops the database.
Last line: RESULT write_rows_per_s=... copy_rows_per_s=... executemany_rows_per_s=...
vs_copy=... vs_executemany=...
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate  # noqa: E402
from portal.db.writer import WritePath  # noqa: E402

COLUMNS = ("time", "host", "component", "name", "labels", "value")
SQL_COLS = ", ".join(COLUMNS)


def make_rows(n: int) -> list[tuple]:
    """Realistic samples: 40 hosts x 25 metrics x a few label sets, 10 s apart."""
    rng = random.Random(42)
    hosts = [f"cn{i:02d}" for i in range(1, 41)]
    metrics = [f"obs_host_metric_{i}" for i in range(25)]
    labelsets = [json.dumps({"cpu": str(c)}) for c in range(4)]
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=20)
    series = [(h, "host", m, ls) for h in hosts for m in metrics for ls in labelsets]
    rows = []
    for i in range(n):
        h, c, m, ls = series[i % len(series)]
        t = start + dt.timedelta(seconds=10 * (i // len(series)))
        rows.append((t, h, c, m, ls, rng.random() * 100))
    return rows


def truncate(url: str) -> None:
    with psycopg.connect(db_engine.libpq_dsn(url), autocommit=True) as conn:
        conn.execute("TRUNCATE metric_samples")
        conn.execute("CHECKPOINT")


def count(url: str) -> int:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        row = conn.execute("SELECT count(*) FROM metric_samples").fetchone()
        return int(row[0]) if row else 0


def bench_write_path(url: str, rows: list[tuple], batch: int) -> float:
    with tempfile.TemporaryDirectory() as spool:
        w = WritePath(
            url,
            "metric_samples",
            COLUMNS,
            spool_dir=Path(spool),
            batch_rows=batch,
            queue_rows=len(rows) + 1,
            flush_seconds=0.05,
        )
        t0 = time.perf_counter()
        for i in range(0, len(rows), 10_000):  # producers hand over rows in chunks
            w.write_many(rows[i : i + 10_000])
        ok = w.flush(timeout=3600)
        elapsed = time.perf_counter() - t0
        w.close()
    assert ok, "write path did not drain"
    return elapsed


def bench_copy(url: str, rows: list[tuple]) -> float:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY metric_samples ({SQL_COLS}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        conn.commit()
        return time.perf_counter() - t0


def bench_executemany(url: str, rows: list[tuple]) -> float:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO metric_samples ({SQL_COLS}) VALUES (%s, %s, %s, %s, %s::jsonb, %s)",
                rows,
            )
        conn.commit()
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=50_000, help="write path rows per COPY batch")
    args = ap.parse_args()

    server = os.environ.get("PORTAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
    base = make_url(db_engine.sqlalchemy_url(server))
    url = base.set(
        drivername="postgresql", database=f"obsportal_bench_{uuid.uuid4().hex[:8]}"
    ).render_as_string(hide_password=False)
    rows = make_rows(args.rows)
    print(f"rows: {len(rows):,}  database: {make_url(url).database}")
    migrate.upgrade(url)
    try:
        results = {}
        for name, fn in (
            ("copy", lambda: bench_copy(url, rows)),
            ("write", lambda: bench_write_path(url, rows, args.batch)),
            ("executemany", lambda: bench_executemany(url, rows)),
        ):
            truncate(url)
            elapsed = fn()
            stored = count(url)
            assert stored == len(rows), f"{name}: {stored} rows stored, {len(rows)} written"
            results[name] = len(rows) / elapsed
            print(f"{name:12} {elapsed:8.2f} s  {results[name]:12,.0f} rows/s")
    finally:
        db_engine.drop_database(url)
    vs_copy = results["write"] / results["copy"]
    vs_exec = results["write"] / results["executemany"]
    print(
        f"RESULT write_rows_per_s={results['write']:.0f} copy_rows_per_s={results['copy']:.0f} "
        f"executemany_rows_per_s={results['executemany']:.0f} vs_copy={vs_copy:.2f} "
        f"vs_executemany={vs_exec:.1f}"
    )


if __name__ == "__main__":
    main()
