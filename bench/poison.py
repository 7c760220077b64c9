#!/usr/bin/env python3
"""Poison records: N log lines of which 1 in 10,000 is hostile, against the same N all clean.

Self-contained: uses PORTAL_DATABASE_URL's server (default 127.0.0.1:5432) with two throwaway
databases it drops at the end. Writes the lines to per-host files twice, once with every
10,000th line made hostile (a lone-surrogate escape in JSON, NaN in JSON, a raw NUL byte, a
2 MB message, in turn) and once with those lines clean, ships each set with one
``portal collect logs --once`` process, and counts what was stored and set aside.
``--rounds N`` repeats the pair in alternating order and reports the median ratio (a loaded
machine makes one pair noisy). Last line: RESULT lines=... stored_good=... rejected=...
lost_good=... hostile_vs_clean_ratio=... (throughput in lines/s, hostile over clean).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate, timeseries  # noqa: E402
from portal.db.writer import rejected_records  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EVERY = 10_000  # one hostile line in this many
KINDS = ("surrogate", "nan", "nul", "huge")
HUGE_BYTES = 2 * 1024 * 1024


def good_line(i: int, iso: str) -> str:
    return json.dumps({"time": iso, "level": "info", "msg": f"good {i} beam {i % 16} ok"})


def hostile_line(i: int, iso: str, kind: str) -> str:
    """The line the issue found hostile, in four kinds (raw text, written as is)."""
    head = f'{{"time": "{iso}", "level": "error", "msg": "hostile {i}'
    if kind == "surrogate":
        return head + ' x \\ud800 y"}'  # a lone-surrogate escape: json.loads returns it
    if kind == "nan":
        return head + '", "snr": NaN}'  # what Python's json.dumps writes by default
    if kind == "nul":
        return head + ' a\x00b"}'  # a raw NUL byte in the file
    return head + " " + "x" * HUGE_BYTES + '"}'


def generate(root: Path, n: int, files: int, hostile: bool) -> tuple[int, dt.datetime]:
    """``n`` lines over ``files`` files under ``root``; the number of hostile lines written."""
    root.mkdir(parents=True)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    handles = [
        open(root / f"st{k:02d}.log", "w", buffering=1 << 20, encoding="utf-8")  # noqa: SIM115
        for k in range(files)
    ]
    bad = 0
    try:
        for i in range(n):
            when = start + dt.timedelta(microseconds=i * 3000)
            iso = when.isoformat().replace("+00:00", "Z")
            if hostile and i % EVERY == EVERY // 2:
                line = hostile_line(i, iso, KINDS[bad % len(KINDS)])
                bad += 1
            else:
                line = good_line(i, iso)
            handles[i % files].write(line + "\n")
    finally:
        for fh in handles:
            fh.close()
    return bad, start


def ship(url: str, root: Path) -> float:
    """One shipper over ``root``'s files to completion; seconds of wall time."""
    env = {
        **os.environ,
        "PORTAL_DATABASE_URL": url,
        "PORTAL_DATA_DIR": str(root / "var"),
        "PORTAL_HOST_NAME": "bench",
        "PORTAL_LOG_LEVEL": "ERROR",
    }
    cmd = [sys.executable, "-m", "portal", "collect", "logs", "--once", "--poll", "0.05"]
    cmd += ["--source", f"{root / '*.log'}=pipeline"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=REPO)
    assert done.returncode == 0, f"the shipper exited with {done.returncode}"
    return time.perf_counter() - t0


def counts(url: str) -> tuple[int, int, int]:
    """(good lines stored, distinct good lines stored, hostile lines stored)."""
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE message LIKE 'good %'), "
            "count(DISTINCT split_part(message, ' ', 2)) FILTER (WHERE message LIKE 'good %'), "
            "count(*) FILTER (WHERE message LIKE 'hostile %') FROM log_lines"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def database(server: str) -> str:
    return (
        make_url(db_engine.sqlalchemy_url(server))
        .set(drivername="postgresql", database=f"obsportal_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )


class Run(NamedTuple):
    """One shipping run: lines/s, hostile lines written, good lines stored (all, distinct),
    hostile lines stored, rows set aside."""

    rate: float
    hostile: int
    good: int
    distinct: int
    stored_hostile: int
    rejected: int


def one_run(server: str, root: Path, lines: int, files: int, hostile: bool) -> Run:
    """Generate, ship into a fresh database, count; the database and files are removed."""
    url = database(server)
    try:
        bad, start = generate(root, lines, files, hostile)
        migrate.upgrade(url)
        with db_engine.get_engine(url).begin() as conn:
            timeseries.ensure_partitions(conn, "log_lines", start.date(), dt.date.today())
        db_engine.dispose_all()
        seconds = ship(url, root)
        good, distinct, stored_bad = counts(url)
        rejected = sum(len(r.get("rows") or []) for r in rejected_records(root / "var" / "spool"))
        return Run(lines / seconds, bad, good, distinct, stored_bad, rejected)
    finally:
        db_engine.dispose_all()
        db_engine.drop_database(url)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="100000 for a quick run")
    ap.add_argument("--files", type=int, default=8, help="log files (one host's components)")
    ap.add_argument(
        "--rounds", type=int, default=1, help="clean/hostile pairs, order alternating; median"
    )
    args = ap.parse_args()

    server = os.environ.get("PORTAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
    tmp = Path(tempfile.mkdtemp(prefix="obsportal-bench-poison-"))
    print(f"lines: {args.lines:,}  files: {args.files}  one hostile line in {EVERY:,}", flush=True)
    ratios, lost, rejected, stored_good = [], 0, 0, args.lines
    try:
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)  # the same lines, then hostile
            runs = {}
            for hostile in order:
                name = "hostile" if hostile else "clean"
                run = runs[name] = one_run(
                    server, tmp / f"{name}{r}", args.lines, args.files, hostile
                )
                print(
                    f"round {r + 1} {name}: {run.rate:,.0f} lines/s, {run.hostile} hostile; "
                    f"stored {run.good:,} good ({run.distinct:,} distinct), {run.stored_hostile} "
                    f"hostile (made storable at the edge), {run.rejected} set aside",
                    flush=True,
                )
            bad = runs["hostile"]
            assert bad.good == bad.distinct, f"{bad.good - bad.distinct} good lines stored twice"
            stored_good = min(stored_good, bad.distinct)
            lost = max(lost, args.lines - bad.hostile - bad.distinct)
            rejected = max(rejected, bad.rejected)
            ratios.append(bad.rate / runs["clean"].rate)
        ratio = statistics.median(ratios)
        print(f"hostile/clean throughput per round: {', '.join(f'{x:.2f}' for x in ratios)}")
        print(
            f"RESULT lines={args.lines} stored_good={stored_good} rejected={rejected} "
            f"lost_good={lost} hostile_vs_clean_ratio={ratio:.2f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
