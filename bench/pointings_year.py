#!/usr/bin/env python3
"""Year-scale pointings: 24 h and 30 d summaries per beam and per sky region, pre-aggregated vs
the raw query, in the same run.

Self-contained: a throwaway database on PORTAL_DATABASE_URL's server (dropped at the end).
Seeds ``--days`` days of pointings at the telescope's rate (1,024 beams, 165,537 pointings a
day; a year is 60 M rows) with COPY, one transaction a day, through the summary trigger the
write path fires; then times each summary (``portal.db.summaries.summary``) against the same
figures from the raw rows (``raw_summary``) over the same window (whole hours up to the
current one), checking they agree. First, one day is COPYed with the trigger disabled and then
enabled: what keeping the summaries costs the write path. A 24 h or 30 d window reads
the same rows whatever lies before it, so 31 days stand for a year (``--days 366`` seeds one).
Last line: RESULT rows=... summary_p50_ms=... raw_p50_ms=... speedup=...
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate, summaries, timeseries  # noqa: E402

COLS = "time, beam, ra_deg, dec_deg, duration_s, rfi_fraction, data_bytes, max_dm, n_candidates"


def day_lines(day: dt.date, per_day: int, beams: int, rng: np.random.Generator) -> str:
    """One day of drift-scan pointings as COPY text: each beam in turn, RA following the sky."""
    sec = np.sort(rng.uniform(0, 86400, per_day))
    beam = rng.integers(0, beams, per_day)
    ra = (sec / 86400 * 360 + beam * (360 / beams) / 8) % 360
    dec = -60 + (beam % 32) * 4.5 + rng.normal(0, 0.5, per_day)
    rfi = np.round(rng.beta(1, 12, per_day), 4)
    size = rng.integers(5 * 10**8, 2 * 10**9, per_day)
    dm = np.round(rng.exponential(300, per_day), 2)
    cands = rng.poisson(3, per_day)
    hh, rest = np.divmod(sec, 3600)
    mm, ss = np.divmod(rest, 60)  # microseconds: two beams never start at the same instant
    stamp = f"{day.isoformat()} "
    rows = zip(
        hh.astype(int).tolist(),
        mm.astype(int).tolist(),
        ss.round(6).tolist(),
        beam.tolist(),
        ra.round(4).tolist(),
        dec.round(4).tolist(),
        rfi.tolist(),
        size.tolist(),
        dm.tolist(),
        cands.tolist(),
        strict=True,
    )
    return "".join(
        f"{stamp}{h:02d}:{m:02d}:{s:09.6f}+00\t{b}\t{r}\t{d}\t536.9\t{f}\t{z}\t{x}\t{c}\n"
        for h, m, s, b, r, d, f, z, x, c in rows
    )


def seed(url: str, days: int, per_day: int, beams: int) -> tuple[int, float]:
    """COPY ``days`` days ending today; (rows, seconds). Prints progress."""
    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    with db_engine.get_engine(url).begin() as conn:
        timeseries.ensure_partitions(conn, "pointings", first, today)
    rng = np.random.default_rng(7)
    total, t0 = 0, time.perf_counter()
    with db_engine.connect_raw(url, autocommit=True) as conn:
        for i in range(days):
            day = first + dt.timedelta(days=i)
            text = day_lines(day, per_day, beams, rng)
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(f"COPY pointings ({COLS}) FROM STDIN") as copy,
            ):
                copy.write(text)
            total += per_day
            rate = total / (time.perf_counter() - t0)
            print(f"\rseeded {i + 1}/{days} days, {total:,} rows ({rate:,.0f}/s)", end="")
        print(flush=True)
        conn.execute("ANALYZE pointings")
        for table in summaries.TABLES.values():
            conn.execute(f"ANALYZE {table}")
    return total, time.perf_counter() - t0


def trigger_cost(url: str, per_day: int, beams: int) -> tuple[float, float]:
    """One day COPYed without, then with the summary trigger (rows/s each; emptied after)."""
    rng = np.random.default_rng(3)
    text = day_lines(dt.datetime.now(dt.UTC).date(), per_day, beams, rng)
    rates = []
    with db_engine.connect_raw(url, autocommit=True) as conn:
        for enabled in (False, True):
            state = "ENABLE" if enabled else "DISABLE"
            conn.execute(f"ALTER TABLE pointings {state} TRIGGER pointings_summarise")
            t0 = time.perf_counter()
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(f"COPY pointings ({COLS}) FROM STDIN") as copy,
            ):
                copy.write(text)
            rates.append(per_day / (time.perf_counter() - t0))
            conn.execute("TRUNCATE pointings")
            for table in summaries.TABLES.values():
                conn.execute(f"TRUNCATE {table}")
    return rates[0], rates[1]


def timed(fn: Callable[[], list[dict]], repeat: int) -> tuple[float, list[dict]]:
    """Median seconds of ``repeat`` calls, and the last result."""
    times: list[float] = []
    out: list[dict] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=31, help="days seeded (366: a year, 60 M rows)")
    ap.add_argument("--per-day", type=int, default=165_537, help="pointings a day")
    ap.add_argument("--beams", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each query")
    args = ap.parse_args()
    server = os.environ.get("PORTAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
    url = (
        make_url(db_engine.sqlalchemy_url(server))
        .set(drivername="postgresql", database=f"obsportal_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    try:
        migrate.upgrade(url)
        with db_engine.get_engine(url).begin() as conn:
            today = dt.datetime.now(dt.UTC).date()
            timeseries.ensure_partitions(conn, "pointings", today, today)
        bare, kept = trigger_cost(url, args.per_day, args.beams)
        print(
            f"one day by COPY: {bare:,.0f} rows/s without the summaries, {kept:,.0f} rows/s "
            f"with the trigger keeping them ({kept / bare:.2f})"
        )
        rows, seconds = seed(url, args.days, args.per_day, args.beams)
        print(
            f"seed: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s (COPY, "
            "summaries kept by the trigger)"
        )
        end = dt.datetime.now(dt.UTC)
        fast_t, raw_t = [], []
        with db_engine.get_engine(url).connect() as conn:
            for span in (dt.timedelta(hours=24), dt.timedelta(days=30)):
                for by in ("beam", "region"):
                    start, stop = summaries.hours(end - span, end)  # whole hours: no raw rows

                    def fast(
                        by: str = by, start: dt.datetime = start, stop: dt.datetime = stop
                    ) -> list[dict]:
                        return summaries.summary(conn, start, stop, by)  # type: ignore[arg-type]

                    def raw(
                        by: str = by, start: dt.datetime = start, stop: dt.datetime = stop
                    ) -> list[dict]:
                        return summaries.raw_summary(conn, start, stop, by)  # type: ignore[arg-type]

                    f_s, f_rows = timed(fast, args.repeat)
                    r_s, r_rows = timed(raw, max(1, args.repeat // 2))
                    agree = [r["pointings"] for r in f_rows] == [r["pointings"] for r in r_rows]
                    assert agree, f"summary and raw query disagree ({span}, {by})"
                    fast_t.append(f_s)
                    raw_t.append(r_s)
                    print(
                        f"{str(span):>16} per {by:6}: summary {f_s * 1000:8.1f} ms  "
                        f"raw {r_s * 1000:9.1f} ms  ({len(f_rows)} groups, "
                        f"{sum(r['pointings'] for r in f_rows):,} pointings, results agree)"
                    )
    finally:
        db_engine.drop_database(url)
    s50, r50 = statistics.median(fast_t) * 1000, statistics.median(raw_t) * 1000
    print(
        f"RESULT rows={rows} summary_p50_ms={s50:.1f} raw_p50_ms={r50:.1f} speedup={r50 / s50:.1f}"
    )


if __name__ == "__main__":
    main()
