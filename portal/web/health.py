"""Reachability of every backend the portal reads, checked in parallel with short timeouts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from portal.db.engine import is_reachable, sqlalchemy_url
from portal.settings import Settings

TIMEOUT = 2.0


def _http_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=TIMEOUT).status_code == 200
    except httpx.HTTPError:
        return False


def check(cfg: Settings) -> dict[str, Any]:
    """``{"status": "ok"|"degraded", "backends": {name: {"url", "ok"}}}``."""
    probes = {
        "database": lambda: is_reachable(cfg.database_url, timeout=int(TIMEOUT)),
        "prometheus": lambda: _http_ready(f"{cfg.prometheus_url}/-/ready"),
        "pushgateway": lambda: _http_ready(f"{cfg.pushgateway_url}/-/ready"),
        "alertmanager": lambda: _http_ready(f"{cfg.alertmanager_url}/-/ready"),
    }
    if cfg.loki_url:
        probes["loki"] = lambda: _http_ready(f"{cfg.loki_url}/ready")
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = {name: pool.submit(fn) for name, fn in probes.items()}
        ok = {name: fut.result() for name, fut in futures.items()}
    urls = {
        "database": make_url(sqlalchemy_url(cfg.database_url)).render_as_string(hide_password=True),
        "prometheus": cfg.prometheus_url,
        "pushgateway": cfg.pushgateway_url,
        "alertmanager": cfg.alertmanager_url,
        "loki": cfg.loki_url,
    }
    return {
        "status": "ok" if all(ok.values()) else "degraded",
        "backends": {name: {"ok": ok[name], "url": urls[name]} for name in ok},
    }
