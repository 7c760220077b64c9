"""Alerts: what fires now and what resolved within the picked range, from PostgreSQL (so the
page works while Prometheus is down), with severity, since when, who silenced it until when
(asked from Alertmanager) and a link to the runbook section. Refreshes every 10 seconds."""

from __future__ import annotations

from typing import Any

import flask
from dash import Input, Output, callback, dcc, html

from portal import quicklook as ql
from portal import routes
from portal.alerts import alertmanager, runbooks
from portal.alerts.query import Alert, latest, when
from portal.auth.roles import requires
from portal.errors import BackendUnavailable

TITLE = "Alerts"
ORDER = 15
LIMIT = 500
COLUMNS = ("severity", "status", "alert", "summary", "host", "component", "since", "silenced")


def layout(
    time_range: ql.TimeRange, severity: str = "", host: str = "", component: str = "", **_: Any
) -> html.Div:
    """The filters (controls above the page, kept in the URL) feed the refreshing table."""
    return html.Div(
        [
            dcc.Store(
                id="alerts-filter",
                data={"severity": severity, "host": host, "component": component},
            ),
            dcc.Interval(id="alerts-tick", interval=10_000),
            html.Div(id="alerts-list"),
        ]
    )


def _row(alert: Alert, silences: list[alertmanager.Silence] | None, portal_url: str) -> html.Tr:
    cfg = routes.settings()
    link = runbooks.link(alert.annotations.get("runbook_url", ""), portal_url, cfg.runbook_base_url)
    since = when(alert.starts_at)
    if alert.resolved_at:
        since += f", resolved {when(alert.resolved_at)}"
    cells = [
        alert.severity or "–",
        alert.status,
        alert.alertname,
        alert.summary,
        alert.host or "–",
        alert.component or "–",
        since,
        alertmanager.describe(alert.labels, alert.status == "firing", silences),
    ]
    runbook = html.A("runbook", href=link, className="alerts-runbook") if link else "–"
    return html.Tr(
        [html.Td(c) for c in cells] + [html.Td(runbook)],
        className=f"alerts-{alert.status}",
    )


@callback(
    Output("alerts-list", "children"),
    Input("alerts-filter", "data"),
    Input("alerts-tick", "n_intervals"),
    Input(ql.TIME_RANGE, "data"),
)
@requires("viewer")
def refresh(filters: dict[str, str] | None, _tick: int | None, tr_data: Any) -> Any:
    """Firing alerts first, then those resolved within the range; newest first in each."""
    cfg = routes.settings()
    tr = ql.TimeRange.from_store(tr_data)
    chosen = {k: v for k, v in (filters or {}).items() if k in ("severity", "host", "component")}
    found = latest(
        cfg.database_url, firing_only=False, limit=LIMIT, resolved_since=tr.start, **chosen
    )
    found.sort(key=lambda a: a.status != "firing")  # stable: newest first within each
    notice = None
    silences: list[alertmanager.Silence] | None
    try:
        silences = alertmanager.silences(cfg.alertmanager_url)
    except BackendUnavailable as exc:
        silences, notice = None, ql.notice(f"Alertmanager unavailable: {exc}")
    firing = sum(a.status == "firing" for a in found)
    summary = html.P(
        f"{firing} firing, {len(found) - firing} resolved in the last {tr.label}"
        if tr.label != "custom"
        else f"{firing} firing, {len(found) - firing} resolved in the range",
        id="alerts-count",
    )
    if not found:
        return [notice, summary, html.P("no alerts", id="alerts-table", className="portal-empty")]
    portal_url = flask.request.host_url.rstrip("/")
    table = html.Table(
        [
            html.Thead(html.Tr([html.Th(c) for c in (*COLUMNS, "runbook")])),
            html.Tbody([_row(a, silences, portal_url) for a in found]),
        ],
        className="portal-table",
        id="alerts-table",
    )
    return [notice, summary, table]
