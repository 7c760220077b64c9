#!/usr/bin/env python3
"""API under load: 20 concurrent clients against ``portal web`` vs the same SQL over psycopg.

Self-contained: a throwaway database on PORTAL_DATABASE_URL's server (dropped at the end) with
a day of log lines, one real ``portal web`` (gunicorn, default workers) on a free loopback
port. Each of ``--clients`` threads keeps one HTTP connection and sends its share of a fixed
number of requests to ``/healthz`` and to ``/api/logs`` (host + component + 1 h), each as a
user of its own (an API token, checked on every request as in production); then the same
number of clients run the very SQL ``/api/logs`` runs, each over its own psycopg connection.
``healthz_rps`` (an answer from memory, no query) is what this web server and these clients
reach on this machine at all: the ceiling for ``api_rps``.
Last line: RESULT api_rps=... sql_rps=... api_vs_sql=... healthz_p95_ms=... healthz_rps=...
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from portal.auth import tokens  # noqa: E402
from portal.auth.identity import Identity  # noqa: E402
from portal.db import engine as db_engine  # noqa: E402
from portal.db import migrate, timeseries  # noqa: E402
from portal.logs import query as lq  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HOSTS = [f"cn{h:03d}" for h in range(1, 33)]
COMPONENTS = ["l1-beam", "l1-rfi", "hhat-daily", "storage", "transfer", "collector"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(url: str, rows: int, start: dt.datetime) -> None:
    """``rows`` log lines over the 24 h after ``start``, written with one COPY."""
    rng = random.Random(3)
    step = 86400 / rows
    buf = io.StringIO()
    for i in range(rows):
        when = start + dt.timedelta(seconds=i * step)
        host, comp = rng.choice(HOSTS), rng.choice(COMPONENTS)
        buf.write(f"{when.isoformat()}\t{host}\t{comp}\tINFO\t{comp} step {i} ok\t{{}}\tb\t{i}\n")
    with psycopg.connect(db_engine.libpq_dsn(url), autocommit=True) as conn:
        with conn.cursor() as cur:
            cols = "time, host, component, level, message, labels, source, seq"
            with cur.copy(f"COPY log_lines ({cols}) FROM STDIN") as copy:
                copy.write(buf.getvalue())
        conn.execute("ANALYZE log_lines")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run_clients(
    clients: int, jobs: list[str], make: Callable[[], Callable[[str], None]]
) -> tuple[float, list[float]]:
    """Each client takes jobs off a shared list with its own connection; (seconds, latencies)."""
    lock = threading.Lock()
    todo = list(jobs)
    latencies: list[float] = []
    errors: list[str] = []

    def worker() -> None:
        try:
            do = make()
            while True:
                with lock:
                    if not todo:
                        return
                    job = todo.pop()
                t0 = time.perf_counter()
                do(job)
                dt_ = time.perf_counter() - t0
                with lock:
                    latencies.append(dt_)
        except Exception as exc:  # reported after the run
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} clients failed, first: {errors[0]}")
    return seconds, latencies


def http_client(port: int, secrets: list[str]) -> Callable[[], Callable[[str], None]]:
    """Each client a user of its own (an API token): per-user limits apply per client. No
    secrets: anonymous clients (a load balancer's probes)."""
    pool = list(secrets)
    lock = threading.Lock()

    def make() -> Callable[[str], None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        with lock:
            headers = {"Authorization": f"Bearer {pool.pop()}"} if pool else {}

        def get(path: str) -> None:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")

        return get

    return make


def get_once(port: int, path: str) -> bytes:
    """The body of one GET on a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def start_web(url: str, root: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")},
        "PORTAL_WEB_WORKERS": os.environ.get("PORTAL_WEB_WORKERS", "2"),  # the default
        "PORTAL_DATABASE_URL": url,
        "PORTAL_DATA_DIR": str(root / "var"),
        "PORTAL_WEB_BIND": f"127.0.0.1:{port}",
        "PORTAL_ANONYMOUS": "viewer",
        "PORTAL_LOG_LEVEL": "WARNING",
        # backends nobody runs here: /healthz reports them down, as in a partial outage
        "PORTAL_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "PORTAL_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
    }
    log = open(root / "web.log", "wb")  # noqa: SIM115  # closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "portal", "web"], env=env, cwd=REPO, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit((root / "web.log").read_text()[-2000:])
        try:
            get_once(port, "/healthz")
            return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("portal web did not answer within 90 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=2000, help="per endpoint")
    ap.add_argument("--rows", type=int, default=200_000, help="log lines seeded (one day)")
    args = ap.parse_args()

    server = os.environ.get("PORTAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x")
    url = (
        make_url(db_engine.sqlalchemy_url(server))
        .set(drivername="postgresql", database=f"obsportal_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    root = Path(tempfile.mkdtemp(prefix="obsportal-bench-api-"))
    proc = None
    try:
        migrate.upgrade(url)
        start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        start -= dt.timedelta(days=1)
        with db_engine.get_engine(url).begin() as conn:
            timeseries.ensure_partitions(conn, "log_lines", start.date(), dt.date.today())
        seed(url, args.rows, start)
        who = Identity("bench", "cli", "admin", "local")
        secrets = [tokens.create(url, who, f"bench-{k}", "viewer") for k in range(args.clients)]
        port = free_port()
        proc = start_web(url, root, port)

        rng = random.Random(11)
        picks = [
            (
                rng.choice(HOSTS),
                rng.choice(COMPONENTS),
                start + dt.timedelta(hours=rng.randrange(24)),
            )
            for _ in range(args.requests)
        ]
        paths = [
            "/api/logs?"
            + urlencode(
                {
                    "host": h,
                    "component": c,
                    "since": t.isoformat().replace("+00:00", "Z"),
                    "until": (t + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                }
            )
            for h, c, t in picks
        ]
        client = http_client(port, secrets)
        run_clients(args.clients, paths[: args.clients * 2], client)  # warm up
        api_s, api_lat = run_clients(args.clients, paths, http_client(port, secrets))
        hz_s, hz_lat = run_clients(
            args.clients, ["/healthz"] * args.requests, http_client(port, [])
        )

        statements = [
            lq.statement(
                lq.LogQuery(hosts=(h,), components=(c,), since=t, until=t + dt.timedelta(hours=1))
            )
            for h, c, t in picks
        ]
        todo = [str(i) for i in range(len(statements))]

        def sql_client() -> Callable[[str], None]:
            conn = psycopg.connect(db_engine.libpq_dsn(url), autocommit=True)

            def run(job: str) -> None:
                stmt, params = statements[int(job)]
                conn.execute(stmt, params).fetchall()

            return run

        sql_s, sql_lat = run_clients(args.clients, todo, sql_client)
        health = json.loads(get_once(port, "/healthz"))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        db_engine.drop_database(url)
        shutil.rmtree(root, ignore_errors=True)

    api_rps, sql_rps, hz_rps = len(paths) / api_s, len(todo) / sql_s, args.requests / hz_s
    ms = 1000
    print(
        f"/api/logs: {api_rps:,.0f} req/s  p50 {pct(api_lat, 50) * ms:.1f} ms  "
        f"p95 {pct(api_lat, 95) * ms:.1f} ms  ({args.clients} clients, {len(paths)} requests)"
    )
    print(
        f"same SQL, {args.clients} psycopg connections: {sql_rps:,.0f} queries/s  "
        f"p50 {pct(sql_lat, 50) * ms:.1f} ms  p95 {pct(sql_lat, 95) * ms:.1f} ms"
    )
    print(
        f"/healthz: {hz_rps:,.0f} req/s  p50 {pct(hz_lat, 50) * ms:.1f} ms  "
        f"p95 {pct(hz_lat, 95) * ms:.1f} ms  (status {health.get('status')!r})"
    )
    print(
        f"RESULT api_rps={api_rps:.0f} sql_rps={sql_rps:.0f} api_vs_sql={api_rps / sql_rps:.2f} "
        f"healthz_p95_ms={pct(hz_lat, 95) * ms:.1f} healthz_rps={hz_rps:.0f}"
    )


if __name__ == "__main__":
    main()
