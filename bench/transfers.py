#!/usr/bin/env python3
"""Transfers and registration: the transfer workers vs plain rsync, the producer API vs COPY.

Self-contained: uses PORTAL_DATABASE_URL's server (default 127.0.0.1:5432) with a throwaway
database it drops at the end, and starts its own sshd on 127.0.0.1 (``tests/sshd.py``).

1. Copy the same files (mixed sizes, ``--total-mb``) to a local SSH destination twice: plain
   ``rsync -a`` over SSH (the same-run baseline), then through a replication rule and
   ``--workers`` transfer workers, which also verify every file's checksum at the destination.
2. Register ``--products`` products through the producer API (validation + write path) vs a raw
   ``COPY`` of the same rows into a table of the same shape and indexes.

Last line: RESULT copy_ratio=... rsync_mb_s=... workers_mb_s=... register_rows_per_s=...
register_vs_copy=...
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from portal import settings  # noqa: E402
from portal.data import catalog, checksum, rules, sites, transfer  # noqa: E402
from portal.data.producer import PRODUCT_COLUMNS, Producer, product_row  # noqa: E402
from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate  # noqa: E402
from portal.stack import process  # noqa: E402

SIZES = (64 << 10, 1 << 20, 8 << 20, 32 << 20, 128 << 20)  # mixed: many small, a few large


def make_files(folder: Path, total: int) -> list[Path]:
    folder.mkdir(parents=True)
    out, done, i = [], 0, 0
    block = os.urandom(1 << 20)
    while done < total:
        size = min(SIZES[i % len(SIZES)], total - done)
        path = folder / f"stack{i:05d}.h5"
        with open(path, "wb") as fh:
            left = size
            while left:
                fh.write(block[: min(left, len(block))])
                left -= min(left, len(block))
            fh.write(i.to_bytes(8, "little"))  # every file differs
        out.append(path)
        done += size
        i += 1
    return out


def bench_rsync(server: object, src: Path, dest: Path) -> float:
    ssh = " ".join(server.ssh_command())  # type: ignore[attr-defined]
    start = time.perf_counter()
    subprocess.run(
        ["rsync", "-a", "-e", ssh, f"{src}/", f"{server.user}@127.0.0.1:{dest}/"],  # type: ignore[attr-defined]
        check=True,
    )
    return time.perf_counter() - start


def bench_workers(
    cfg: settings.Settings, server: object, files: list[Path], dest: Path, workers: int
) -> float:
    url = cfg.database_url
    tag = uuid.uuid4().hex[:8]
    kinds = {"hhat_monthly"}
    rows = [
        product_row(
            {
                "kind": "hhat_monthly",
                "name": f"bench-{tag}/{f.name}",
                "path": str(f),
                "size_bytes": f.stat().st_size,
                "checksum": checksum.of_file(f),
                "metadata": {"bench": tag},
            },
            kinds,
            "local",
        )
        for f in files
    ]
    catalog.store_products(url, rows)
    site = sites.Site(
        f"bench-{tag}",
        f"ssh://{server.user}@127.0.0.1:{server.port}{dest}",  # type: ignore[attr-defined]
        max_active=workers,
        options={
            "identity_file": str(server.key),  # type: ignore[attr-defined]
            "known_hosts": str(server.known_hosts),  # type: ignore[attr-defined]
        },
    )
    sites.save(url, site)
    rules.add(url, f"bench-{tag}", "hhat_monthly", site.name, {"bench": tag}, 86400)
    start = time.perf_counter()
    rules.evaluate(cfg)
    stop = threading.Event()
    pool = threading.Thread(
        target=transfer.run_threads, args=(cfg, workers, site.name, stop), daemon=True
    )
    pool.start()

    def finished() -> bool:
        with db_engine.connect_raw(url) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'AVAILABLE'), count(*) FROM replicas "
                "WHERE site = %s",
                (site.name,),
            ).fetchone()
        return bool(row and row[0] == len(files))

    ok = process.wait_until(finished, 3600, interval=0.05)
    took = time.perf_counter() - start
    stop.set()
    pool.join(30)
    if not ok:
        raise SystemExit("transfer workers did not finish")
    return took


def bench_register(cfg: settings.Settings, n: int) -> tuple[float, float]:
    url = cfg.database_url
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    tag = uuid.uuid4().hex[:6]

    def record(i: int) -> dict[str, object]:
        return {
            "kind": "l1",
            "name": f"reg-{tag}/{i:08d}",
            "host": "cn01",
            "path": f"/data/l1/{i:08d}.fil",
            "size_bytes": 1_000_000_000 + i,
            "checksum": f"sha256:{i:064x}",
            "time_start": t0 + timedelta(minutes=i),
            "time_end": t0 + timedelta(minutes=i + 1),
            "beam": i % 1024,
            "ra_deg": (i * 0.01) % 360,
            "dec_deg": 12.5,
            "metadata": {},
            "created_at": t0 + timedelta(minutes=i + 1),
        }

    records = [record(i) for i in range(n)]
    producer = Producer(cfg, name=f"bench-{tag}")  # loads the plugins: once per process
    start = time.perf_counter()
    with producer:
        for i in range(0, n, 10_000):
            producer.register_products(records[i : i + 10_000])
        if not producer.flush(3600):
            raise SystemExit("the producer did not flush")
    api_s = time.perf_counter() - start

    raw = [product_row(r, {"l1"}, "local") for r in records]  # the same rows, ready made
    for r in records:
        r["name"] = f"raw-{r['name']}"
    import json

    raw = [(*row[:1], f"raw-{row[1]}", *row[2:9], json.dumps(row[9]), *row[10:]) for row in raw]
    with db_engine.connect_raw(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_products (LIKE data_products INCLUDING DEFAULTS INCLUDING "
            "INDEXES INCLUDING CONSTRAINTS)"
        )
        start = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for i in range(0, n, 10_000):
                with cur.copy(
                    f"COPY bench_products ({', '.join(PRODUCT_COLUMNS)}) FROM STDIN"
                ) as cp:
                    for row in raw[i : i + 10_000]:
                        cp.write_row(row)
        copy_s = time.perf_counter() - start
    return api_s, copy_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total-mb", type=int, default=2048, help="Bytes copied (mixed sizes).")
    ap.add_argument("--products", type=int, default=1_000_000, help="Products registered.")
    ap.add_argument("--workers", type=int, default=4, help="Transfer workers (threads).")
    args = ap.parse_args()

    from tests import sshd

    if not sshd.available() or not shutil.which("rsync"):
        raise SystemExit("needs openssh-server and rsync (make system-packages)")
    base = os.environ.get("PORTAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/obsportal")
    url = base.rsplit("/", 1)[0] + f"/obsportal_bench_transfers_{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-transfers-"))
    os.environ["PORTAL_DATABASE_URL"] = url
    os.environ.setdefault("PORTAL_DATA_DIR", str(tmp / "var"))
    settings.get.cache_clear()
    cfg = settings.get()
    migrate.upgrade(url)
    from tests.conftest import free_port

    server = sshd.start(tmp / "sshd", free_port())
    try:
        files = make_files(tmp / "src", args.total_mb << 20)
        total = sum(f.stat().st_size for f in files)
        rsync_s = bench_rsync(server, tmp / "src", tmp / "dest-rsync")
        workers_s = bench_workers(cfg, server, files, tmp / "dest-workers", args.workers)
        shutil.rmtree(tmp / "src", ignore_errors=True)
        api_s, copy_s = bench_register(cfg, args.products)
    finally:
        process.stop(server.pid, timeout=10)
        db_engine.dispose_all()
        db_engine.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)
    rsync_mb_s = total / rsync_s / 1e6
    workers_mb_s = total / workers_s / 1e6
    rows_s = args.products / api_s
    copy_rows_s = args.products / copy_s
    print(f"files: {len(files)}, {total / 1e6:.0f} MB; workers: {args.workers}")
    print(f"baseline rsync -a over SSH: {rsync_s:.2f} s, {rsync_mb_s:.1f} MB/s")
    print(f"transfer workers (verified): {workers_s:.2f} s, {workers_mb_s:.1f} MB/s")
    print(f"baseline raw COPY: {args.products} rows in {copy_s:.2f} s, {copy_rows_s:.0f} rows/s")
    print(f"producer API: {args.products} rows in {api_s:.2f} s, {rows_s:.0f} rows/s")
    print(
        f"RESULT copy_ratio={workers_mb_s / rsync_mb_s:.2f} rsync_mb_s={rsync_mb_s:.1f} "
        f"workers_mb_s={workers_mb_s:.1f} register_rows_per_s={rows_s:.0f} "
        f"register_vs_copy={rows_s / copy_rows_s:.2f}"
    )


if __name__ == "__main__":
    main()
