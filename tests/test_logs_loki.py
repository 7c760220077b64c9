"""Loki push and query against a small in-test server implementing Loki's documented HTTP API.

The server follows https://grafana.com/docs/loki/latest/reference/loki-http-api/: ``POST
/loki/api/v1/push`` (JSON streams, optionally gzip) and ``GET /loki/api/v1/query_range``
(``query``, ``start``/``end`` in ns, ``limit``, ``direction``), including Loki's defaults that
the CLI must work around: at most 5,000 lines per query and ranges of at most 721 h.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from portal.errors import BackendUnavailable
from portal.logs.loki import Entry, LokiClient, to_ns
from portal.logs.selector import parse
from portal.stack import process
from tests.conftest import REPO, free_port, portal_cmd, run_portal, shared_tmpdir

MAX_LINES = 5000
MAX_RANGE_NS = 721 * 3600 * 10**9


class FakeLoki:
    """Stores pushed entries in memory and answers LogQL log queries over them."""

    def __init__(self) -> None:
        self.entries: list[tuple[dict[str, str], int, str]] = []
        self.pushes: list[dict[str, str]] = []  # request headers of accepted pushes
        self.fail_next = 0  # answer this many pushes with 503 first
        self.queries: list[dict[str, str]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if self.path != "/loki/api/v1/push":
                    return self._send(404, b"404 page not found")
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with fake.lock:
                    if fake.fail_next > 0:
                        fake.fail_next -= 1
                        return self._send(503, b"ingester not ready")
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                try:
                    body = json.loads(raw)
                    new = [
                        (dict(s["stream"]), int(ts), line)
                        for s in body["streams"]
                        for ts, line in s["values"]
                    ]
                except (ValueError, KeyError, TypeError) as exc:
                    return self._send(400, f"loghttp: {exc}".encode())
                with fake.lock:
                    fake.entries.extend(new)
                    fake.pushes.append(dict(self.headers))
                self._send(204, b"")

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                if url.path != "/loki/api/v1/query_range":
                    return self._send(404, b"404 page not found")
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.queries.append(q)
                start, end = int(q["start"]), int(q["end"])
                if end - start > MAX_RANGE_NS:
                    return self._send(400, b"the query time range exceeds the limit (721h)")
                limit = int(q.get("limit", "100"))
                if limit > MAX_LINES:
                    return self._send(400, b"max entries limit per query exceeded")
                sel = parse(q["query"])
                with fake.lock:
                    hits = [
                        e for e in fake.entries if start <= e[1] < end and _matches(sel, e[0], e[2])
                    ]
                forward = q.get("direction", "backward") == "forward"
                hits.sort(key=lambda e: e[1], reverse=not forward)
                hits = hits[:limit]
                streams: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
                for labels, ts, line in hits:
                    streams.setdefault(tuple(sorted(labels.items())), []).append([str(ts), line])
                result = [{"stream": dict(k), "values": v} for k, v in streams.items()]
                self._send(
                    200,
                    {"status": "success", "data": {"resultType": "streams", "result": result}},
                )

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def lines_for(self, host: str) -> int:
        with self.lock:
            return sum(1 for labels, _, _ in self.entries if labels.get("host") == host)


def _matches(sel: Any, labels: dict[str, str], line: str) -> bool:
    for m in sel.matchers:
        value = labels.get(m.label, "")
        ok = {
            "=": value == m.value,
            "!=": value != m.value,
            "=~": re.fullmatch(m.value, value) is not None,
            "!~": re.fullmatch(m.value, value) is None,
        }[m.op]
        if not ok:
            return False
    for f in sel.filters:
        ok = {
            "|=": f.value in line,
            "!=": f.value not in line,
            "|~": re.search(f.value, line) is not None,
            "!~": re.search(f.value, line) is None,
        }[f.op]
        if not ok:
            return False
    return True


@pytest.fixture
def loki() -> Iterator[FakeLoki]:
    server = FakeLoki()
    yield server
    server.close()


def test_push_is_gzip_json_and_retries_with_backoff(loki: FakeLoki) -> None:
    now = datetime.now(UTC)
    entries = [
        Entry({"host": "cn07", "component": "l1", "level": "INFO"}, to_ns(now), "a"),
        Entry({"host": "cn07", "component": "l1", "level": "ERROR"}, to_ns(now) + 1, "b"),
        Entry({"host": "cn07", "component": "l1", "level": "INFO"}, to_ns(now) + 2, "c"),
    ]
    loki.fail_next = 2
    with LokiClient(loki.url, retries=4) as client:
        client.push(entries)
    assert loki.fail_next == 0  # two refusals were retried
    assert loki.pushes[0]["Content-Encoding"] == "gzip"
    assert sorted((e[0]["level"], e[2]) for e in loki.entries) == [
        ("ERROR", "b"),
        ("INFO", "a"),
        ("INFO", "c"),
    ]
    loki.fail_next = 10
    with LokiClient(loki.url, retries=2) as client, pytest.raises(BackendUnavailable) as info:
        client.push(entries)
    assert "Loki push" in str(info.value) and "503" in str(info.value)


def test_query_range_pages_past_5000_lines_and_721_hours(loki: FakeLoki) -> None:
    """12,000 lines over 40 days come back complete and in order, in pages and windows."""
    start = datetime.now(UTC) - timedelta(days=40)
    step = timedelta(days=40) / 12000
    labels = {"host": "cn07", "component": "l1-beam", "level": "INFO"}
    with LokiClient(loki.url) as client:
        batch = [Entry(labels, to_ns(start + i * step), f"line {i}") for i in range(12000)]
        client.push(batch)
        # lines sharing a timestamp at a page edge must neither repeat nor vanish
        edge = to_ns(start + 4999 * step)
        client.push([Entry({**labels, "level": "WARNING"}, edge, f"twin {k}") for k in range(3)])
        got = list(
            client.query_range('{host="cn07"}', start, datetime.now(UTC) + timedelta(seconds=1))
        )
    lines = [e.line for e in got]
    assert len(lines) == 12003 and len(set(lines)) == 12003
    assert [e.time_ns for e in got] == sorted(e.time_ns for e in got)
    # two 720 h windows, the first needing a second page: 5,000 + 4,003 + 3,000 lines
    assert [int(q["limit"]) for q in loki.queries] == [5000] * 3
    assert len({q["end"] for q in loki.queries}) == 2


def test_shipper_pushes_and_cli_reads_loki_in_the_store_format(
    loki: FakeLoki, database_url: str
) -> None:
    workdir = shared_tmpdir("obsportal-loki-")
    host = f"loki-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_DATA_DIR": str(workdir / "var"),
        "PORTAL_HOST_NAME": host,
        "PORTAL_LOKI_URL": loki.url,
    }
    now = datetime.now(UTC)
    log = workdir / "l1-beam.log"
    lines = [
        f"{(now + timedelta(milliseconds=i)).isoformat()} {'ERROR' if i % 3 == 0 else 'INFO'} "
        f"beam {i % 4} dropped {i} packets"
        for i in range(300)
    ]
    log.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        portal_cmd("collect", "logs", "--source", str(log), "--poll", "0.05"),
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.wait_until(lambda: loki.lines_for(host) == 300, 60, interval=0.1)
    finally:
        process.stop(proc.pid)
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    assert {labels["component"] for labels, _, _ in loki.entries} == {"l1-beam"}
    args = ("--host", host, "--level", "error", "--since", "10m")
    via_loki = run_portal("logs", "--source", "loki", *args, env=env, check=True).stdout
    via_db = run_portal("logs", *args, env=env, check=True).stdout
    assert len(via_loki.splitlines()) == 100
    assert via_loki == via_db  # same lines, same format, same order
    sel = f'{{host="{host}"}} |= "dropped 7 "'
    (one,) = run_portal(
        "logs", "--source", "loki", sel, "--since", "1h", env=env
    ).stdout.splitlines()
    assert one.endswith(f" {host} l1-beam INFO beam 3 dropped 7 packets")


def test_cli_loki_unreachable_is_one_clear_error(database_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_portal("logs", "--source", "loki", "--since", "1h", env={"PORTAL_LOKI_URL": dead})
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: Loki at {dead} does not answer")
    unset = run_portal("logs", "--source", "loki", env={"PORTAL_LOKI_URL": ""})
    assert "PORTAL_LOKI_URL" in unset.stderr and unset.returncode == 1
