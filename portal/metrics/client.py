"""The one Prometheus query client (prometheus-api-client), with errors users can read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect

from portal.errors import BackendUnavailable, PortalError


class Prometheus:
    """Instant and range PromQL queries; raises ``BackendUnavailable`` / ``PortalError``."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        retry = requests.adapters.Retry(total=0)
        self._api = PrometheusConnect(
            url=url, disable_ssl=True, retry=retry, timeout=int(max(1, timeout))
        )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except requests.exceptions.RequestException as exc:
            raise BackendUnavailable(
                f"Prometheus at {self.url} does not answer ({type(exc).__name__})"
            ) from None
        except PrometheusApiClientException as exc:
            raise PortalError(f"Prometheus rejected the query: {exc}") from None

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=self.timeout).status_code == 200
        except requests.exceptions.RequestException:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant vector: ``[{"metric": {...}, "value": [ts, "v"]}, ...]``."""
        result: list[dict[str, Any]] = self._call(self._api.custom_query, promql)
        return result

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str | float = "60s"
    ) -> list[dict[str, Any]]:
        """Range matrix: ``[{"metric": {...}, "values": [[ts, "v"], ...]}, ...]``."""
        step_s = f"{step}s" if isinstance(step, int | float) else step
        result: list[dict[str, Any]] = self._call(
            self._api.custom_query_range, promql, start_time=start, end_time=end, step=step_s
        )
        return result

    def scalar(self, promql: str, default: float | None = None) -> float | None:
        """The first sample's value, or ``default`` when the vector is empty."""
        result = self.query(promql)
        if not result:
            return default
        return float(result[0]["value"][1])

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets (``/api/v1/targets``)."""
        try:
            resp = requests.get(f"{self.url}/api/v1/targets", timeout=self.timeout)
            resp.raise_for_status()
        except requests.exceptions.RequestException as exc:
            raise BackendUnavailable(
                f"Prometheus at {self.url} does not answer ({type(exc).__name__})"
            ) from None
        active: list[dict[str, Any]] = resp.json()["data"]["activeTargets"]
        return active
