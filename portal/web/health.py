"""Reachability of every backend the portal reads, checked in parallel with short timeouts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from portal.db.engine import is_reachable
from portal.readiness import http_ready
from portal.redact import redact_url
from portal.settings import Settings

TIMEOUT = 2.0


def check(cfg: Settings) -> dict[str, Any]:
    """``{"status": "ok"|"degraded", "backends": {name: {"url", "ok"}}}``."""
    probes = {
        "database": lambda: is_reachable(cfg.database_url, timeout=int(TIMEOUT)),
        "prometheus": lambda: http_ready(cfg.prometheus_url, timeout=TIMEOUT),
        "pushgateway": lambda: http_ready(cfg.pushgateway_url, timeout=TIMEOUT),
        "alertmanager": lambda: http_ready(cfg.alertmanager_url, timeout=TIMEOUT),
    }
    if cfg.loki_url:
        probes["loki"] = lambda: http_ready(cfg.loki_url, "/ready", timeout=TIMEOUT)
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = {name: pool.submit(fn) for name, fn in probes.items()}
        ok = {name: fut.result() for name, fut in futures.items()}
    urls = {
        "database": cfg.database_url,
        "prometheus": cfg.prometheus_url,
        "pushgateway": cfg.pushgateway_url,
        "alertmanager": cfg.alertmanager_url,
        "loki": cfg.loki_url,
    }
    return {
        "status": "ok" if all(ok.values()) else "degraded",
        "backends": {name: {"ok": ok[name], "url": redact_url(urls[name])} for name in ok},
    }
