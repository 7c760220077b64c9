"""The small public API for page and quicklook authors: data helpers and the time range.

Plugins import only this module, so the portal's internals can move without breaking them.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from dash import html
from dash.exceptions import PreventUpdate

from portal import routes, settings
from portal.db.engine import describe_unreachable, get_engine, time_limit
from portal.errors import BackendUnavailable, DatabaseUnavailable, PortalError
from portal.timeparse import is_relative, parse_time

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

_log = logging.getLogger("portal.web.errors")

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


@dataclass(frozen=True)
class TimeRange:
    """The range every page shows; ``label`` is ``1h``/``6h``/``24h``/``7d`` or ``custom``.

    A custom range remembers relative ``from``/``to`` text (``2h``, ``now-6h``) so links keep it.
    """

    start: datetime
    end: datetime
    label: str
    start_text: str = field(default="", compare=False, repr=False)
    end_text: str = field(default="", compare=False, repr=False)

    @classmethod
    def parse(
        cls, range: str | None = None, start: str | None = None, end: str | None = None
    ) -> TimeRange:
        """From URL values: ``range=6h``, or ``from``/``to`` (``2h``, ``now-6h``, ISO times)."""
        now = datetime.now(UTC)
        if start or end or range == "custom":
            t1 = parse_time(end, "to", now) if end else now
            t0 = parse_time(start, "from", now) if start else t1 - RANGES[DEFAULT_RANGE]
            if t0 >= t1:
                raise PortalError(f"time range start {t0:%F %T} is not before end {t1:%F %T}")
            return cls(t0, t1, "custom", start or "", end or "")
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
        from portal.metrics.client import auto_step

        return auto_step(self.start, self.end)

    def query(self) -> str:
        """The URL query string that reproduces this range (relative ends stay relative)."""
        if self.label != "custom":
            return f"range={self.label}"
        moving = is_relative(self.start_text)
        start = "".join(self.start_text.split()) if moving else f"{self.start:%Y-%m-%dT%H:%M}"
        if self.end_text and is_relative(self.end_text):
            end = "".join(self.end_text.split())
        else:
            end = "now" if moving and not self.end_text else f"{self.end:%Y-%m-%dT%H:%M}"
        return f"range=custom&from={start}&to={end}"


# -- data helpers -----------------------------------------------------------------------------
def _cfg() -> settings.Settings:
    """The serving app's settings while a page renders; the process's elsewhere (scripts)."""
    import flask

    if flask.has_app_context():
        return routes.settings()
    return settings.get()


#: Longest one ``sql`` statement may run (PostgreSQL ``statement_timeout``), in seconds; in the
#: web app ``PORTAL_QUERY_TIMEOUT_SECONDS`` when that is shorter.
SQL_TIMEOUT_S = 30


def _sql_timeout() -> float:
    limit = time_limit()
    return SQL_TIMEOUT_S if limit is None else min(SQL_TIMEOUT_S, limit)


def sql(query: str, **params: Any) -> pd.DataFrame:
    """Run one SQL statement (``:name`` parameters) read-only and return a DataFrame.

    The statement runs in a ``READ ONLY`` transaction that is rolled back afterwards, as one
    statement (prepared: ``COMMIT; ...`` cannot leave the transaction), and is cancelled after
    ``_sql_timeout()`` seconds: a quicklook cannot change the database or hold it up.
    """
    url = _cfg().database_url
    try:
        with get_engine(url).connect() as conn:
            conn.execution_options(postgresql_readonly=True)  # BEGIN READ ONLY
            conn.exec_driver_sql(
                f"SET LOCAL statement_timeout = {max(1, round(_sql_timeout() * 1000))}"
            )
            driver: Any = conn.connection.driver_connection
            threshold = driver.prepare_threshold
            driver.prepare_threshold = 0  # extended protocol: exactly one statement
            try:
                result = conn.execute(sa.text(query), params)
                rows = result.fetchall() if result.returns_rows else []
                columns = list(result.keys()) if result.returns_rows else []
            finally:
                driver.prepare_threshold = threshold
            return pd.DataFrame(rows, columns=columns)
    except sa.exc.DBAPIError as exc:
        raise _sql_error(url, exc) from None
    except sa.exc.SQLAlchemyError as exc:
        first = str(exc).strip().splitlines()[0]
        raise PortalError(f"the database rejected the query: {first}") from None


def _sql_error(url: str, exc: sa.exc.DBAPIError) -> PortalError:
    """One sentence for a failed ``sql`` call, naming what happened."""
    orig = exc.orig or exc
    state = getattr(orig, "sqlstate", None)
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    if state == "25006":
        return PortalError(f"read-only: quicklook queries cannot change the database ({first})")
    if state == "57014":
        return PortalError(
            f"the query ran longer than {_sql_timeout():g} s and was cancelled: "
            "narrow the time range or aggregate in SQL"
        )
    if state == "42601" and "multiple commands" in first:
        return PortalError("ql.sql runs one statement per call (no ';' between statements)")
    no_answer = state is None and isinstance(exc, sa.exc.OperationalError)
    if no_answer or (state or "").startswith("08"):  # 08xxx: connection exceptions
        return DatabaseUnavailable(describe_unreachable(url, orig))
    return PortalError(f"the database rejected the query: {first}")


def _prometheus() -> Any:
    from portal.metrics.client import Prometheus

    return Prometheus(_cfg().prometheus_url, timeout=5.0)


def promql(
    query: str,
    start: datetime | None = None,
    end: datetime | None = None,
    step: float | str | None = None,
) -> pd.DataFrame:
    """PromQL as a long DataFrame: ``time`` (UTC), ``value`` and one column per label.

    Instant when ``start`` is None, else a range up to ``end`` (default now); the step
    defaults to about 300 points.
    """
    prom = _prometheus()
    if start is None:
        return prom.query_frame(query)
    return prom.range_frame(query, start, end or datetime.now(UTC), step)


def logs(*args: Any, **kwargs: Any) -> pd.DataFrame:
    """Log lines as a DataFrame: ``portal.logs.query.query_frame`` (see its arguments)."""
    from portal.logs.query import query_frame

    frame: pd.DataFrame = query_frame(*args, **kwargs)
    return frame


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


def _shows_traceback() -> tuple[bool, str]:
    """(whether this request may see tracebacks, its request id): admins only; code running
    outside a request (scripts, tests) is local and sees them."""
    import flask

    if not flask.has_request_context():
        return True, ""
    who = routes.identity()
    return who.role == "admin", who.request_id


def error_card(title: str, exc: BaseException) -> html.Div:
    """A plugin failure, shown only on that page: the full traceback for admins; everyone else
    gets one line with the request id, and the portal log has the traceback under that id."""
    admin, rid = _shows_traceback()
    _log.error("%s (request %s)", title, rid or "-", exc_info=exc)
    body: html.Pre | html.P
    if admin:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        body = html.Pre(tb, className="portal-traceback")
    else:
        body = html.P(
            f"An error occurred (request id {rid}); the portal's log has the details for an admin.",
            className="portal-error-ref",
        )
    return html.Div([html.H3(title), body], className="portal-error-card", role="alert")
