"""The one Prometheus client against a real Prometheus: steps, escaped label values, frames, TLS."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from portal import quicklook as ql
from portal.errors import BackendUnavailable, PortalError
from portal.metrics.client import Prometheus, format_step, label_value
from portal.settings import Settings
from portal.stack.process import wait_until
from portal.web.pages.host import SERIES, series_query
from tests.conftest import free_port

WEIRD = 'cn"07\\x'  # a host name with a double quote and a backslash
PUSHED = """\
obs_host_load1{host="cn\\"07\\\\x"} 3
obs_host_load1{host="cn\\"07"} 2
obs_host_load1{host="cn07"} 1
obs_host_load1{host="cn07\\\\x"} 4
"""


@pytest.fixture(scope="module")
def pushed(stack: Settings) -> Settings:
    """Four look-alike hosts in the real Pushgateway, scraped by the real Prometheus (polled)."""
    httpx.put(f"{stack.pushgateway_url}/metrics/job/clienttest", content=PUSHED).raise_for_status()
    prom = Prometheus(stack.prometheus_url)
    query = 'count(obs_host_load1{job="clienttest"})'
    assert wait_until(lambda: prom.scalar(query) == 4, 60, interval=0.5), "never scraped"

    def in_ranges() -> bool:  # a range query's last step may precede the first scrape a while
        end = datetime.now(UTC)
        found = prom.query_range(query, end - timedelta(minutes=5), end, 15.0)
        return bool(found and found[0].get("values"))

    assert wait_until(in_ranges, 60, interval=0.5), "not in range queries yet"
    return stack


@pytest.mark.parametrize(
    ("step", "sent"),
    [(15.0, "15s"), (15, "15s"), (0.5, "500ms"), ("15.0s", "15s"), ("1m", "60s"), ("90", "90s")],
)
def test_steps_are_formatted_the_way_prometheus_accepts_them(step: float | str, sent: str) -> None:
    assert format_step(step) == sent


def test_bad_steps_are_clear_errors() -> None:
    for step in (0, -5, float("nan"), "0s"):
        with pytest.raises(PortalError, match="is not a positive duration"):
            format_step(step)
    assert format_step("1m30s") == "1m30s"  # Prometheus's own grammar judges the rest


def test_label_values_are_quoted_and_escaped_per_the_promql_spec() -> None:
    assert label_value("cn07") == '"cn07"'
    assert label_value(WEIRD) == '"cn\\"07\\\\x"'
    assert label_value("a\nb\tc\x01") == '"a\\nb\\tc\\x01"'


def test_escaped_host_matches_only_itself_in_real_prometheus(pushed: Settings) -> None:
    prom = Prometheus(pushed.prometheus_url)
    for host, value in [(WEIRD, 3.0), ('cn"07', 2.0), ("cn07", 1.0), ("cn07\\x", 4.0)]:
        df = prom.query_frame(f"obs_host_load1{{host={label_value(host)}}}")
        assert list(df["host"]) == [host] and list(df["value"]) == [value], host
    injected = 'cn07"} or vector(1) or x{a="'  # would match everything if pasted raw
    assert prom.query_frame(f"obs_host_load1{{host={label_value(injected)}}}").empty


def test_host_page_queries_are_accepted_and_exact(pushed: Settings) -> None:
    end = datetime.now(UTC)
    df = ql.promql(series_query(SERIES["Load 1 min"], WEIRD), end - timedelta(minutes=5), end)
    assert not df.empty and set(df["host"]) == {WEIRD} and set(df["value"]) == {3.0}


def test_promql_frames_keep_the_long_format(pushed: Settings) -> None:
    instant = ql.promql('obs_host_load1{job="clienttest"}')
    assert list(instant.columns)[-2:] == ["time", "value"] and "host" in instant.columns
    assert str(instant["time"].dt.tz) == "UTC" and instant["value"].dtype == float
    assert sorted(instant["value"]) == [1.0, 2.0, 3.0, 4.0]
    end = datetime.now(UTC)
    ranged = ql.promql('obs_host_load1{host="cn07"}', end - timedelta(minutes=5), end, step=15.0)
    assert list(ranged.columns)[-2:] == ["time", "value"] and set(ranged["value"]) == {1.0}
    assert str(ranged["time"].dt.tz) == "UTC" and ranged["time"].is_monotonic_increasing
    for empty in (
        ql.promql('obs_host_load1{host="nobody"}'),
        ql.promql('obs_host_load1{host="nobody"}', end - timedelta(minutes=5), end),
    ):
        assert empty.empty and list(empty.columns) == ["time", "value"]


@pytest.fixture
def self_signed_https(tmp_path: Path) -> Iterator[str]:
    """A real HTTPS server whose certificate no CA signed."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server = http.server.HTTPServer(("127.0.0.1", free_port()), http.server.BaseHTTPRequestHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)


def test_certificates_are_verified(self_signed_https: str) -> None:
    with pytest.raises(BackendUnavailable, match=r"does not answer \(SSLError\)"):
        Prometheus(self_signed_https, timeout=5).query("up")


def test_errors_never_show_a_password() -> None:
    dead = Prometheus(f"http://scraper:s3cret@127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(BackendUnavailable) as err:
        dead.query("up")
    assert "scraper:***@" in str(err.value) and "s3cret" not in str(err.value)
    assert not dead.healthy()
