"""The one readiness probe for HTTP backends (Prometheus, Pushgateway, Alertmanager, Loki)."""

from __future__ import annotations

import httpx

READY_PATH = "/-/ready"  # Prometheus, Pushgateway and Alertmanager; Loki uses /ready


def http_ready(base_url: str, path: str = READY_PATH, timeout: float = 2.0) -> bool:
    """True when ``base_url + path`` answers 200 in time; any failure to answer is not ready."""
    try:
        return httpx.get(base_url.rstrip("/") + path, timeout=timeout).status_code == 200
    except (httpx.HTTPError, httpx.InvalidURL):
        return False
