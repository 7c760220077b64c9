"""Backends loaded with simulator history, for the panel-query harness (tests and bench).

Pipeline series and rows come from the real simulator (``portal.demo``); series it does not
simulate (the write path's, ``up``, and host-collector names it lacks) are synthesised here
with the same names (docs/metrics.md). Prometheus cannot ingest old samples by scraping, so
history is written as OpenMetrics and turned into TSDB blocks with ``promtool tsdb
create-blocks-from openmetrics``; the series of the dashboards' recording rules are then
evaluated over that history with ``promtool tsdb create-blocks-from rules``.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from portal.db.engine import connect_raw, get_engine
from portal.db.timeseries import ensure_partitions
from portal.db.writer import copy_rows
from portal.demo import model
from portal.demo import seed as demo_seed
from portal.errors import PortalError
from portal.grafana import plugin as grafana_plugin
from portal.metrics.client import Prometheus
from portal.settings import Settings
from portal.stack import process

Labels = tuple[tuple[str, str], ...]
PER_BEAM_POINTINGS = 162  # the real telescope: 165,537 a day over 1,024 beams


def hosts(compute: int = 2, beams: int = 2, storage: int = 1) -> list[model.SimHost]:
    """A cluster small enough for tests by default: head, compute nodes, storage, batch."""
    return model.layout(compute_nodes=compute, beams_per_node=beams, storage_nodes=storage)


def _host_series(host: model.SimHost, t: float) -> Iterator[tuple[str, Labels, float]]:
    """Host-collector and write-path series of one host at time ``t`` (smooth, deterministic)."""
    phase = (zlib.crc32(host.name.encode()) % 97) / 97 * math.tau
    day = math.sin(t / 86400 * math.tau + phase)
    base = (("host", host.name), ("job", "collectors"), ("instance", f"{host.name}:9105"))
    yield "up", base, 1.0
    for cpu in ("total", "0", "1"):
        yield "obs_host_cpu_usage_ratio", (*base, ("cpu", cpu)), 0.45 + 0.3 * day
    for i, name in enumerate(("obs_host_load1", "obs_host_load5", "obs_host_load15")):
        yield name, base, 2.0 + day - 0.1 * i
    yield "obs_host_memory_total_bytes", base, 256e9
    yield "obs_host_memory_used_bytes", base, 128e9 + 40e9 * day
    yield "obs_host_swap_total_bytes", base, 8e9
    yield "obs_host_swap_used_bytes", base, 1e8
    for mount, size in (("/", 500e9), ("/scratch", 4e12)):
        labels = (*base, ("mount", mount))
        yield "obs_host_filesystem_size_bytes", labels, size
        yield "obs_host_filesystem_used_bytes", labels, size * (0.4 + 0.2 * (t % 864000) / 864000)
    yield "obs_host_disk_read_bytes_total", (*base, ("device", "sda")), 50e6 * t
    yield "obs_host_disk_written_bytes_total", (*base, ("device", "sda")), 80e6 * t
    yield "obs_host_network_received_bytes_total", (*base, ("interface", "eth0")), 400e6 * t
    yield "obs_host_network_sent_bytes_total", (*base, ("interface", "eth0")), 20e6 * t
    yield "obs_host_temperature_celsius", (*base, ("sensor", "cpu0")), 55 + 10 * day
    comp = (*base, ("component", host.component))
    yield "obs_process_cpu_seconds_total", comp, 0.8 * t
    yield "obs_process_resident_memory_bytes", comp, 2e9 + 5e8 * day
    yield "obs_process_threads", comp, 24.0
    yield "obs_process_up", comp, 1.0
    writer = (*base, ("writer", "collector"))
    for outcome, per_s in (("written", 40.0), ("spooled", 0.0), ("rejected", 0.0)):
        yield "portal_write_rows_total", (*writer, ("outcome", outcome)), per_s * t
    yield "portal_spool_bytes", writer, 0.0
    yield "portal_spool_oldest_age_seconds", writer, 0.0
    yield "portal_write_queue_rows", writer, 12.0 + 10 * day
    yield "portal_write_last_success_timestamp_seconds", writer, t - 1.0


def _series(sim: model.Sim, t: float, jobs: dict[str, tuple[float, float]], skip: set[str]):
    """Everything Prometheus would hold at ``t``; names in ``skip`` come from the simulator."""
    for h in sim.hosts:
        yield from (s for s in _host_series(h, t) if s[0] not in skip)
    for (host, comp, name, labels), value in sim.values.items():
        yield name, (("host", host), ("component", comp), *labels), value
    for job, (finished, duration) in jobs.items():  # pushed: the Pushgateway keeps them
        labels = (("host", "batch01"), ("job", job))
        yield "obs_batch_last_success_timestamp_seconds", labels, finished
        yield "obs_batch_duration_seconds", labels, duration


def _openmetrics(samples: dict[str, dict[Labels, list[str]]]) -> str:
    lines = []
    for name, series in samples.items():
        lines.append(f"# TYPE {name} gauge")
        for labels, points in series.items():
            text = ",".join(f'{k}="{v}"' for k, v in sorted(labels))
            lines.extend(f"{name}{{{text}}} {p}" for p in points)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass
class PromHistory:
    series: int = 0
    samples: int = 0


def backfill_prometheus(
    tsdb: Path,
    start: datetime,
    end: datetime,
    step_s: float,
    warmup: timedelta,
    layout: list[model.SimHost] | None = None,
) -> PromHistory:
    """Simulate ``start``..``end`` every ``step_s`` into TSDB blocks under ``tsdb`` (one
    promtool run per UTC day keeps memory flat)."""
    promtool = shutil.which("promtool")
    if not promtool:
        raise PortalError("promtool not found; install the Debian package prometheus")
    layout = layout or hosts()
    beams = sum(len(h.beams) for h in layout)
    sim = model.Sim(start - warmup, layout, PER_BEAM_POINTINGS * beams, seed=7)
    jobs: dict[str, tuple[float, float]] = {}
    while sim.now < start:  # warm-up at a coarse step: backlog and pushed jobs exist at start
        _record_jobs(sim, min(600.0, (start - sim.now).total_seconds()), jobs)
    simulated = {name for (_, _, name, _) in sim.values}  # the simulator's own series win
    history = PromHistory()
    tsdb.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="obs-openmetrics-") as tmp:
        chunk: dict[str, dict[Labels, list[str]]] = {}
        day = sim.now.date()
        while sim.now <= end:
            t = sim.now.timestamp()
            for name, labels, value in _series(sim, t, jobs, simulated):
                chunk.setdefault(name, {}).setdefault(labels, []).append(f"{value:.6g} {t:.3f}")
                history.samples += 1
            _record_jobs(sim, step_s, jobs)
            if sim.now.date() != day or sim.now > end:
                history.series = max(history.series, sum(len(s) for s in chunk.values()))
                _blocks(promtool, Path(tmp) / f"{day}.om", _openmetrics(chunk), tsdb)
                chunk, day = {}, sim.now.date()
    return history


def _record_jobs(sim: model.Sim, seconds: float, jobs: dict[str, tuple[float, float]]) -> None:
    out = sim.step(seconds)
    for job, duration in out.jobs:
        jobs[job] = (sim.now.timestamp(), duration)


def _blocks(promtool: str, path: Path, text: str, tsdb: Path) -> None:
    path.write_text(text)
    proc = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h"]
        + [str(path), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    path.unlink()
    if proc.returncode != 0:
        raise PortalError(f"promtool could not create blocks: {proc.stderr.strip()[-300:]}")


def recording_rule_blocks(
    prom_url: str,
    start: datetime,
    end: datetime,
    out: Path,
    rule_files: Sequence[Path] | None = None,
) -> list[Path]:
    """TSDB blocks under ``out`` of the recording rules' series (by default the dashboards'
    own, ``prometheus/rules/dashboards.yml``) over ``start``..``end``, evaluated every group
    interval by promtool through the query API of the Prometheus at ``prom_url`` that holds the
    raw history, as a live Prometheus would have recorded them."""
    promtool = shutil.which("promtool")
    if not promtool:
        raise PortalError("promtool not found; install the Debian package prometheus")
    files = grafana_plugin.prometheus_rule_files() if rule_files is None else rule_files
    proc = subprocess.run(
        # 24 h blocks like the raw history's: 2 h ones (promtool's default) would be hundreds
        [promtool, "tsdb", "create-blocks-from", "rules", "--quiet", f"--url={prom_url}"]
        + ["--max-block-duration=24h", f"--output-dir={out}"]
        + [f"--start={int(start.timestamp())}", f"--end={int(end.timestamp())}"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        detail = (proc.stdout + proc.stderr).strip()[-300:]
        raise PortalError(f"promtool could not backfill the recording rules: {detail}")
    return sorted(b for b in out.iterdir() if (b / "meta.json").exists())


def backfill_recording_rules(
    tsdb: Path, start: datetime, end: datetime, rule_files: Sequence[Path] | None = None
) -> int:
    """Add to ``tsdb`` the recording rules' series over ``start``..``end`` of the history it
    holds (``recording_rule_blocks``); returns the blocks added.

    A private Prometheus serves ``tsdb`` to promtool meanwhile; start the one that serves the
    data after this (it loads the new blocks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    pid = serve_prometheus(tsdb, port, tsdb.parent / "prometheus-rules.log")
    try:
        with tempfile.TemporaryDirectory(prefix="obs-rule-blocks-", dir=tsdb.parent) as tmp:
            blocks = recording_rule_blocks(
                f"http://127.0.0.1:{port}", start, end, Path(tmp), rule_files
            )
            process.stop(pid)
            pid = 0
            for block in blocks:
                block.rename(tsdb / block.name)
    finally:
        if pid:
            process.stop(pid)
    return len(blocks)


def serve_prometheus(tsdb: Path, port: int, log: Path, retention_days: int = 400) -> int:
    """A real Prometheus over the backfilled TSDB (no scrapes needed); returns its pid."""
    conf = tsdb.parent / "prometheus.yml"
    conf.write_text("global:\n  scrape_interval: 10s\n  evaluation_interval: 10s\n")
    pid = process.spawn(
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={conf}",
            f"--storage.tsdb.path={tsdb}",
            f"--storage.tsdb.retention.time={retention_days}d",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )

    prom = Prometheus(f"http://127.0.0.1:{port}", timeout=1)
    if not process.wait_until(prom.healthy, 120, interval=0.2):
        process.stop(pid)
        raise PortalError(f"Prometheus did not start: {process.tail(log)}")
    return pid


def seed_database(
    cfg: Settings, days: int, step_s: int = 300, layout: list[model.SimHost] | None = None
) -> int:
    """Simulator rows (metrics, pointings, beam events, products) plus inventory, logs,
    alert events and replicas the simulator does not write; returns rows added."""
    layout = layout or hosts()
    beams = sum(len(h.beams) for h in layout)
    result = demo_seed.seed(cfg, days, layout, step_s, PER_BEAM_POINTINGS * beams)
    url = cfg.database_url
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    with get_engine(url).begin() as conn:
        ensure_partitions(conn, "log_lines", start.date(), now.date())
    rows = result.metric_rows + result.pointings + result.beam_events + result.products
    with connect_raw(url) as pg, pg.transaction():
        for h in layout:
            pg.execute(
                "INSERT INTO hosts (name, role, address) VALUES (%s, %s, '127.0.0.1') "
                "ON CONFLICT (name) DO NOTHING",
                (h.name, h.role),
            )
            pg.execute(
                "INSERT INTO components (name, host, kind) VALUES (%s, %s, %s) "
                "ON CONFLICT (host, name) DO NOTHING",
                (h.component, h.name, h.kind),
            )
        logs = list(_log_rows(layout, start, now))
        copy_rows(pg, "log_lines", _LOG_COLUMNS, logs, dedupe=True)
        rows += len(logs)
        for i, status in enumerate(("firing", "resolved", "firing")):
            payload = {
                "status": status,
                "alertname": "RealtimeLagging",
                "labels": {"alertname": "RealtimeLagging", "host": "cn01", "beam": "1"},
                "annotations": {"summary": "Beam 1 on cn01 lags 2m"},
                "startsAt": (now - timedelta(minutes=30 - i)).isoformat(),
                "fingerprint": f"sample{i // 2}",
            }
            pg.execute(
                "INSERT INTO events (topic, source, payload) VALUES ('alert', 'sample', %s)",
                (json.dumps(payload),),
            )
        pg.execute(
            "INSERT INTO replicas (product_id, site, path, state, size_bytes, attempts, "
            "requested_at) SELECT id, 'archive', 'archive:' || path, "
            "CASE WHEN id % 7 = 0 THEN 'COPYING' ELSE 'AVAILABLE' END, size_bytes, 1, now() "
            "FROM data_products WHERE NOT EXISTS "
            "(SELECT 1 FROM replicas r WHERE r.product_id = data_products.id)"
        )
        _seed_replication(pg)
    return rows + 3


def _seed_replication(pg: Any) -> None:
    """A replication rule to the archive site and one transfer request per replica above (one
    failing), so the storage dashboard's rule and transfer panels have rows."""
    pg.execute(
        "INSERT INTO data_sites (name, url, max_active, bwlimit_kbps, capacity_bytes, options, "
        "created_at) VALUES ('archive', 'file:///srv/archive', 4, 0, 10^15, '{}', now()) "
        "ON CONFLICT (name) DO NOTHING"
    )
    pg.execute(
        "INSERT INTO replication_rules (name, kind, selector, site, within_s, state, total, "
        "done, progress_at, last_error, created_at, updated_at) "
        "SELECT 'sample-to-archive', 'hhat_monthly', '{}', 'archive', 86400, 'REPLICATING', "
        "count(*), count(*) FILTER (WHERE state = 'AVAILABLE'), now(), NULL, now(), now() "
        "FROM replicas WHERE site = 'archive' ON CONFLICT (name) DO NOTHING"
    )
    pg.execute(
        "INSERT INTO transfer_requests (product_id, site, rule_id, state, attempts, last_error, "
        "error_class, next_attempt_at, bytes_total, bytes_done, created_at, updated_at) "
        "SELECT r.product_id, r.site, (SELECT id FROM replication_rules "
        "WHERE name = 'sample-to-archive'), "
        "CASE WHEN r.state = 'AVAILABLE' THEN 'DONE' WHEN r.product_id % 2 = 0 THEN 'FAILED' "
        "ELSE 'SUBMITTED' END, 1, CASE WHEN r.state <> 'AVAILABLE' AND r.product_id % 2 = 0 "
        "THEN 'ssh: connect to host archive port 22: Connection timed out' END, "
        "CASE WHEN r.state <> 'AVAILABLE' AND r.product_id % 2 = 0 THEN 'unreachable' END, "
        "now(), coalesce(r.size_bytes, 0), "
        "CASE WHEN r.state = 'AVAILABLE' THEN coalesce(r.size_bytes, 0) ELSE 0 END, now(), now() "
        "FROM replicas r WHERE r.site = 'archive' AND NOT EXISTS (SELECT 1 FROM "
        "transfer_requests t WHERE t.product_id = r.product_id AND t.site = r.site)"
    )


_LOG_COLUMNS = ("time", "host", "component", "level", "message", "labels", "source", "seq")
_MESSAGES = (
    ("INFO", "pointing recorded"),
    ("INFO", "stack written"),
    ("WARNING", "RFI fraction above 20%"),
    ("ERROR", "packet burst lost on eth0"),
    ("DEBUG", "buffer level nominal"),
)


def _log_rows(layout: list[model.SimHost], start: datetime, end: datetime) -> Iterator[tuple]:
    """One line per host every 5 minutes; each host cycles through every level."""
    t, seq = start.replace(second=0, microsecond=0), 0
    while t <= end:
        for i, h in enumerate(layout):
            level, message = _MESSAGES[(seq // len(layout) + i) % len(_MESSAGES)]
            yield (t, h.name, h.component, level, message, "{}", f"sample:{h.name}", seq)
            seq += 1
        t += timedelta(minutes=5)
