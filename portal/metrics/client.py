"""The one Prometheus client (prometheus-api-client): queries, steps, label values, frames."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd
import requests
from prometheus_api_client import (
    MetricRangeDataFrame,
    MetricSnapshotDataFrame,
    PrometheusApiClientException,
    PrometheusConnect,
)

from portal.errors import BackendUnavailable, PortalError
from portal.readiness import http_ready
from portal.redact import redact_url
from portal.timeparse import parse_duration

STEP_POINTS = 300  # points per graph the default step aims at
MIN_STEP = 15.0  # seconds; the scrape interval, below which more points add nothing
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def auto_step(start: datetime, end: datetime) -> float:
    """A step giving about 300 points over ``start``..``end`` (at least 15 s): one graph's worth."""
    return max(MIN_STEP, round((end - start).total_seconds() / STEP_POINTS))


def format_step(step: float | str) -> str:
    """A step Prometheus accepts: ``15s`` or ``1500ms`` (it rejects ``15.0s``)."""
    seconds: float
    if isinstance(step, str):
        try:
            seconds = parse_duration(step, "PromQL step").total_seconds()
        except PortalError:
            try:
                seconds = float(step)
            except ValueError:
                return step.strip()  # e.g. "1m30s" or "500ms": Prometheus's own grammar decides
    else:
        seconds = float(step)
    ms = round(seconds * 1000) if math.isfinite(seconds) else 0
    if ms <= 0:
        raise PortalError(f"PromQL step {step!r} is not a positive duration")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def label_value(value: str) -> str:
    """``value`` as a PromQL string literal, quoted and escaped: safe to put after ``label=``."""
    body = "".join(_ESCAPES.get(ch, f"\\x{ord(ch):02x}" if ord(ch) < 0x20 else ch) for ch in value)
    return f'"{body}"'


def _long(df: pd.DataFrame) -> pd.DataFrame:
    """The portal's long shape: one column per label, ``time`` (UTC), ``value`` (float)."""
    df = pd.DataFrame(df).rename(columns={"timestamp": "time"})
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df["value"] = df["value"].astype(float)
    labels = [c for c in df.columns if c not in ("time", "value")]
    return df[[*labels, "time", "value"]].reset_index(drop=True)


def empty_frame() -> pd.DataFrame:
    """What a query matching nothing gives: no rows, ``time`` and ``value`` columns."""
    return pd.DataFrame(
        {"time": pd.Series(dtype="datetime64[ns, UTC]"), "value": pd.Series(dtype=float)}
    )


class Prometheus:
    """Instant and range PromQL queries; raises ``BackendUnavailable`` / ``PortalError``."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        retry = requests.adapters.Retry(total=0)
        self._api = PrometheusConnect(
            url=url, disable_ssl=False, retry=retry, timeout=int(max(1, timeout))
        )

    def _unavailable(self, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(
            f"Prometheus at {redact_url(self.url)} does not answer ({type(exc).__name__})"
        )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except requests.exceptions.RequestException as exc:
            raise self._unavailable(exc) from None
        except PrometheusApiClientException as exc:
            raise PortalError(f"Prometheus rejected the query: {exc}") from None

    def healthy(self) -> bool:
        return http_ready(self.url, timeout=self.timeout)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant vector: ``[{"metric": {...}, "value": [ts, "v"]}, ...]``."""
        result: list[dict[str, Any]] = self._call(self._api.custom_query, promql)
        return result

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str | float | None = None
    ) -> list[dict[str, Any]]:
        """Range matrix: ``[{"metric": {...}, "values": [[ts, "v"], ...]}, ...]``."""
        step_s = format_step(auto_step(start, end) if step is None else step)
        result: list[dict[str, Any]] = self._call(
            self._api.custom_query_range, promql, start_time=start, end_time=end, step=step_s
        )
        return result

    def query_range_timed(
        self, promql: str, start: datetime, end: datetime, step: str
    ) -> tuple[list[dict[str, Any]], float]:
        """``query_range`` plus Prometheus's own evaluation time in seconds (``stats=all``):
        what a dashboard waits for on the server, apart from moving and decoding the answer."""
        params = {
            "query": promql,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": step,
            "stats": "all",
        }
        resp = self._get("/api/v1/query_range", params, check=False)
        body = (
            resp.json()
            if resp.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if resp.status_code != 200 or body.get("status") != "success":
            raise PortalError(
                f"Prometheus rejected the query: {body.get('error') or resp.status_code}"
            )
        data = body["data"]
        timings = (data.get("stats") or {}).get("timings") or {}
        return data["result"], float(timings.get("execTotalTime", 0.0))

    def query_frame(self, promql: str) -> pd.DataFrame:
        """The instant vector as a long DataFrame (``MetricSnapshotDataFrame``)."""
        result = self.query(promql)
        return _long(MetricSnapshotDataFrame(result)) if result else empty_frame()

    def range_frame(
        self, promql: str, start: datetime, end: datetime, step: str | float | None = None
    ) -> pd.DataFrame:
        """The range matrix as a long DataFrame (``MetricRangeDataFrame``), one row a sample."""
        result = self.query_range(promql, start, end, step)
        if not any(series.get("values") for series in result):
            return empty_frame()
        return _long(MetricRangeDataFrame(result).reset_index())

    def scalar(self, promql: str, default: float | None = None) -> float | None:
        """The first sample's value, or ``default`` when the vector is empty."""
        result = self.query(promql)
        if not result:
            return default
        return float(result[0]["value"][1])

    def _get(
        self, path: str, params: dict[str, str] | None = None, check: bool = True
    ) -> requests.Response:
        """A GET on the HTTP API; no answer (with ``check``, an HTTP error too) is
        ``BackendUnavailable``."""
        try:
            resp = requests.get(f"{self.url}{path}", params=params, timeout=self.timeout)
            if check:
                resp.raise_for_status()
        except requests.exceptions.RequestException as exc:
            raise self._unavailable(exc) from None
        return resp

    def rule_groups(self) -> list[dict[str, Any]]:
        """Rule groups with their last evaluation time (``/api/v1/rules``)."""
        groups: list[dict[str, Any]] = self._get("/api/v1/rules").json()["data"]["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets (``/api/v1/targets``)."""
        active: list[dict[str, Any]] = self._get("/api/v1/targets").json()["data"]["activeTargets"]
        return active
