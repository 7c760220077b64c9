"""The small public API for page and quicklook authors: data helpers and the time range.

Plugins import only this module, so the portal's internals can move without breaking them.
"""

from __future__ import annotations

import importlib
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from dash import html
from dash.exceptions import PreventUpdate

from portal import settings
from portal.db.engine import describe_unreachable, get_engine
from portal.errors import BackendUnavailable, DatabaseUnavailable, PortalError

__all__ = [
    "TIME_RANGE",
    "BackendUnavailable",
    "DatabaseUnavailable",
    "PortalError",
    "PreventUpdate",
    "TimeRange",
    "error_card",
    "guard",
    "logs",
    "notice",
    "promql",
    "sql",
    "unavailable",
]

#: Id of the ``dcc.Store`` holding the shared picker's range: ``Input(TIME_RANGE, "data")``.
TIME_RANGE = "portal-time-range"

#: Picker choices: label -> length.
RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
DEFAULT_RANGE = "6h"


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        raise PortalError(f"{text!r} is not a time (use e.g. 2026-03-01T12:00)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class TimeRange:
    """The range every page shows; ``label`` is ``1h``/``6h``/``24h``/``7d`` or ``custom``."""

    start: datetime
    end: datetime
    label: str

    @classmethod
    def parse(
        cls, range: str | None = None, start: str | None = None, end: str | None = None
    ) -> TimeRange:
        """From URL values: ``range=6h``, or ``from``/``to`` times (``range=custom``)."""
        now = datetime.now(UTC)
        if start or end or range == "custom":
            t1 = _parse_time(end) if end else now
            t0 = _parse_time(start) if start else t1 - RANGES[DEFAULT_RANGE]
            if t0 >= t1:
                raise PortalError(f"time range start {t0:%F %T} is not before end {t1:%F %T}")
            return cls(t0, t1, "custom")
        label = range or DEFAULT_RANGE
        if label not in RANGES:
            raise PortalError(f"time range {label!r} is not one of {', '.join(RANGES)} or custom")
        return cls(now - RANGES[label], now, label)

    @classmethod
    def from_store(cls, data: dict[str, Any] | None) -> TimeRange:
        """From the ``TIME_RANGE`` store (in callbacks); relative ranges end now."""
        data = data or {}
        return cls.parse(data.get("range"), data.get("from"), data.get("to"))

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def step(self) -> float:
        """A PromQL step giving about 300 points over the range (at least 15 s)."""
        return max(15.0, round(self.seconds / 300))

    def query(self) -> str:
        """The URL query string that reproduces this range."""
        if self.label == "custom":
            return f"range=custom&from={self.start:%Y-%m-%dT%H:%M}&to={self.end:%Y-%m-%dT%H:%M}"
        return f"range={self.label}"


# -- data helpers -----------------------------------------------------------------------------
def _cfg() -> settings.Settings:
    return settings.get()


def sql(query: str, **params: Any) -> pd.DataFrame:
    """Run a read-only SQL query (``:name`` parameters) and return a DataFrame."""
    url = _cfg().database_url
    try:
        with get_engine(url).connect() as conn:
            result = conn.execute(sa.text(query), params)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    except sa.exc.OperationalError as exc:
        raise DatabaseUnavailable(describe_unreachable(url, exc.orig or exc)) from None
    except sa.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise PortalError(f"the database rejected the query: {first}") from None


def _prometheus() -> Any:
    from portal.metrics.client import Prometheus

    return Prometheus(_cfg().prometheus_url, timeout=5.0)


def promql(
    query: str,
    start: datetime | None = None,
    end: datetime | None = None,
    step: float | str | None = None,
) -> pd.DataFrame:
    """PromQL as a long DataFrame: ``time``, ``value`` and one column per label."""
    prom = _prometheus()
    rows: list[dict[str, Any]] = []
    if start is None:
        for series in prom.query(query):
            ts, val = series["value"]
            rows.append({**series["metric"], "time": float(ts), "value": float(val)})
    else:
        end = end or datetime.now(UTC)
        if step is None:
            step = max(15.0, round((end - start).total_seconds() / 300))
        if isinstance(step, int | float):
            step = f"{float(step):g}s"  # Prometheus rejects "15.0s"
        for series in prom.query_range(query, start, end, step):
            for ts, val in series["values"]:
                rows.append({**series["metric"], "time": float(ts), "value": float(val)})
    df = pd.DataFrame(rows, columns=None if rows else ["time", "value"])
    df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
    return df


def logs(*args: Any, **kwargs: Any) -> pd.DataFrame:
    """Log lines as a DataFrame, delegated to ``portal.logs.query`` (the logs capability)."""
    try:
        mod = importlib.import_module("portal.logs.query")
    except ModuleNotFoundError:
        raise PortalError("log queries are not available yet (portal.logs.query)") from None
    fn: Callable[..., Any] | None = getattr(mod, "query_frame", None) or getattr(mod, "query", None)
    if fn is None:
        raise PortalError("portal.logs.query has no query function")
    result = fn(*args, **kwargs)
    return result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)


# -- notices ----------------------------------------------------------------------------------
def source_of(err: PortalError) -> str:
    """Which backend a helper error is about, for the notice title."""
    text = str(err)
    if isinstance(err, DatabaseUnavailable):
        return "Database"
    for name in ("Prometheus", "Pushgateway", "Alertmanager", "Loki"):
        if re.search(name, text, re.IGNORECASE):
            return name
    return "Source"


def notice(text: str, kind: str = "warning") -> html.Div:
    """A one-sentence banner (``warning`` for unavailable sources, ``error`` for bad input)."""
    return html.Div(text, className=f"portal-notice portal-notice-{kind}", role="alert")


def unavailable(err: PortalError) -> html.Div:
    """The notice for a helper error: names the source when one is down."""
    if isinstance(err, BackendUnavailable | DatabaseUnavailable):
        return notice(f"{source_of(err)} unavailable: {err}")
    return notice(str(err), kind="error")


def guard(make: Callable[[], Any]) -> Any:
    """``make()``, or a notice when it raises ``PortalError`` (one dead backend blanks one part)."""
    try:
        return make()
    except PortalError as err:
        return unavailable(err)


def error_card(title: str, exc: BaseException) -> html.Div:
    """A plugin failure: what broke and the full traceback, shown only on that page."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return html.Div(
        [html.H3(title), html.Pre(tb, className="portal-traceback")],
        className="portal-error-card",
        role="alert",
    )
