"""Reachability of every backend the portal reads, checked in parallel with short timeouts.

``/healthz`` answers from a report cached per app and refreshed off the request path: probing
four backends on every request (a new database connection and three HTTP clients each time)
made a load balancer's probes queue behind each other under load.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import flask

from portal.db.engine import is_reachable, pool_usage
from portal.readiness import http_ready
from portal.redact import redact_url
from portal.settings import Settings

TIMEOUT = 2.0
REFRESH_S = 5.0  # a report older than this is refreshed in the background
STALE_S = 60.0  # older than this (a worker idle for a minute): refreshed before answering
EXTENSION = "portal_health"
_create = threading.Lock()


def check(cfg: Settings) -> dict[str, Any]:
    """``{"status": "ok"|"degraded", "backends": {name: {"url", "ok"}}}``, probed now."""
    probes = {
        "database": lambda: is_reachable(cfg.database_url, timeout=int(TIMEOUT)),
        "prometheus": lambda: http_ready(cfg.prometheus_url, timeout=TIMEOUT),
        "pushgateway": lambda: http_ready(cfg.pushgateway_url, timeout=TIMEOUT),
        "alertmanager": lambda: http_ready(cfg.alertmanager_url, timeout=TIMEOUT),
    }
    urls = {
        "database": cfg.database_url,
        "prometheus": cfg.prometheus_url,
        "pushgateway": cfg.pushgateway_url,
        "alertmanager": cfg.alertmanager_url,
        "loki": cfg.loki_url,
    }
    if cfg.loki_url:
        probes["loki"] = lambda: http_ready(cfg.loki_url, "/ready", timeout=TIMEOUT)
    if cfg.database_read_url:
        read_url = cfg.database_read_url
        probes["database_replica"] = lambda: is_reachable(read_url, timeout=int(TIMEOUT))
        urls["database_replica"] = read_url
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = {name: pool.submit(fn) for name, fn in probes.items()}
        ok = {name: fut.result() for name, fut in futures.items()}
    return {
        "status": "ok" if all(ok.values()) else "degraded",
        "backends": {name: {"ok": ok[name], "url": redact_url(urls[name])} for name in ok},
    }


class Monitor:
    """The last backend report of one app; requests read it, a background thread renews it."""

    def __init__(self, cfg: Settings, refresh_s: float = REFRESH_S, stale_s: float = STALE_S):
        self.cfg = cfg
        self.refresh_s, self.stale_s = refresh_s, stale_s
        self._report: dict[str, Any] | None = None
        self._at = 0.0
        self._probing = threading.Lock()

    def _probe(self) -> None:
        report = check(self.cfg)
        self._report, self._at = report, time.monotonic()

    def _probe_once(self) -> None:
        """Probe unless another thread is probing already (then its result will do)."""
        if self._probing.acquire(blocking=False):
            try:
                self._probe()
            finally:
                self._probing.release()

    def report(self) -> dict[str, Any]:
        """The cached report plus the live pool state; probes first only when none is recent."""
        age = time.monotonic() - self._at
        if self._report is None or age > self.stale_s:
            with self._probing:  # the first request of a worker waits for the first probe
                if self._report is None or time.monotonic() - self._at > self.stale_s:
                    self._probe()
        elif age > self.refresh_s:
            threading.Thread(target=self._probe_once, name="healthz-probe", daemon=True).start()
        assert self._report is not None
        return with_pool(self._report, self.cfg, time.monotonic() - self._at)


def with_pool(report: dict[str, Any], cfg: Settings, age: float) -> dict[str, Any]:
    """Add this process's database pool: every connection in use means requests queue for one,
    so the portal is degraded even though the database itself answers."""
    usage = pool_usage(cfg.database_url)
    in_use, most = usage if usage is not None else (0, 0)
    saturated = usage is not None and in_use >= most
    status = "degraded" if saturated else report["status"]
    pool = {"in_use": in_use, "max": most, "saturated": saturated}
    return {**report, "status": status, "database_pool": pool, "age_s": round(age, 1)}


def monitor(app: flask.Flask, cfg: Settings) -> Monitor:
    """The app's monitor, made on first use (in the worker: threads do not survive a fork)."""
    found = app.extensions.get(EXTENSION)
    if found is None:
        with _create:
            found = app.extensions.setdefault(EXTENSION, Monitor(cfg))
    return found
