"""Data: storage by site with days until full, budgets against the seed's volumes, replication
rules, the catalog (filtered by the controls), and deletions waiting out their veto window,
which an operator may veto here."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
from dash import Input, Output, State, callback, dcc, html

from portal import quicklook as ql
from portal import routes
from portal.auth.roles import requires
from portal.errors import PortalError
from portal.web import ui

TITLE = "Data"
PATH = "/data"
ORDER = 35


def layout(
    time_range: ql.TimeRange,
    kind: str = "",
    site: str = "",
    state: str = "",
    name: str = "",
    **_: Any,
) -> list[Any]:
    return [
        html.H3("Storage by site"),
        _forecast,
        lambda: _arrivals(time_range),
        html.H3("Budgets"),
        _budgets,
        html.H3("Hhat coverage (last 14 days)"),
        _coverage,
        html.H3("Replication rules"),
        _rules,
        html.H3("Catalog"),
        lambda: _catalog(time_range, kind, site, state, name),
        html.H3("Deletions"),
        _deletions,
        _veto_form(),
    ]


def _forecast() -> Any:
    from portal.data import accounting as acc

    rows = [
        {
            "site": f.site,
            "used": acc.human(f.used_bytes),
            "capacity": acc.human(f.capacity_bytes),
            "rate / day": acc.human(f.rate_bytes_per_day),
            "days until full": acc.days_text(f.days_until_full),
        }
        for f in acc.forecast(routes.settings())
    ]
    return ui.table(pd.DataFrame(rows), "data-forecast", empty="no copies recorded")


def _arrivals(tr: ql.TimeRange) -> Any:
    from portal.data import accounting as acc

    days = max(1, int((tr.end - tr.start).total_seconds() // 86400) + 1)
    df = pd.DataFrame(acc.bytes_by(routes.settings().database_url, days))
    if df.empty:
        return html.P("no products arrived in this time range", className="portal-empty")
    fig = px.bar(df, x="day", y="bytes", color="kind", facet_row="site", title="Bytes arrived")
    return fig.update_xaxes(type="category")  # one bar per day, however few days


def _budgets() -> Any:
    from portal.data import accounting as acc

    rows = []
    for b in acc.budgets(routes.settings()):
        unit = "/day" if b["per_day"] else ""
        rows.append(
            {
                "kind": b["kind"],
                "budget": acc.human(b["budget_bytes"]) + unit,
                "actual": acc.human(b["actual_bytes"]) + unit,
                "of budget": "–" if b["ratio"] is None else f"{100 * b['ratio']:.0f}%",
            }
        )
    return ui.table(pd.DataFrame(rows), "data-budgets")


def _coverage() -> Any:
    from portal.data import coverage

    rows = [
        {
            "sky position": p.sky,
            "daily stacks": f"{len(p.present)}/14",
            "missing (why)": coverage.summary(p),
            "monthly": "current" if p.monthly_current else "behind",
            "cumulative": "current" if p.cumulative_current else "behind",
        }
        for p in coverage.coverage(routes.settings().database_url, 14)
    ]
    return ui.table(pd.DataFrame(rows), "data-coverage", empty="no Hhat stacks registered")


def _rules() -> Any:
    from portal.data import rules

    rows = [
        {
            "rule": r["name"],
            "state": r["state"],
            "copies": f"{r['done']}/{r['total']}",
            "kind": r["kind"],
            "where": ", ".join(f"{k}={v}" for k, v in r["selector"].items()) or "–",
            "site": r["site"],
            "last error": r["last_error"] or "–",
        }
        for r in rules.listing(routes.settings().database_url)
    ]
    return ui.table(pd.DataFrame(rows), "data-rules", empty="no replication rules")


def _catalog(tr: ql.TimeRange, kind: str, site: str, state: str, name: str) -> Any:
    from portal.data import accounting as acc
    from portal.data import catalog

    q = catalog.Query(
        kind=kind, site=site, state=state, name=name, since=tr.start, until=tr.end, limit=200
    )
    rows = [
        {
            "name": p["name"],
            "kind": p["kind"],
            "beam": p["beam"],
            "size": acc.human(p["size_bytes"]),
            "created": p["created_at"].strftime("%Y-%m-%d %H:%M"),
            "origin": f"{p['site']}:{p['state']}",
            "copies": ", ".join(f"{r['site']}:{r['state']}" for r in p["replicas"]) or "–",
        }
        for p in catalog.search(routes.settings().database_url, q)
    ]
    return ui.table(pd.DataFrame(rows), "data-catalog", empty="no products match")


def _deletions() -> Any:
    from portal.data import deletion

    rows = [
        {
            "id": d["id"],
            "state": d["state"],
            "copy": f"{d['product']}@{d['site']}",
            "not before": d["not_before"].strftime("%Y-%m-%d %H:%M"),
            "by": d["requested_by"],
            "reason": d["reason"],
            "vetoed by": d["vetoed_by"] or "–",
        }
        for d in deletion.listing(routes.settings().database_url, 50)
    ]
    return ui.table(pd.DataFrame(rows), "data-deletions", empty="no deletions")


def _veto_form() -> html.Div:
    return html.Div(
        [
            dcc.Input(id="data-veto-id", type="number", placeholder="deletion id"),
            dcc.Input(id="data-veto-reason", placeholder="why it must stay"),
            html.Button("Veto", id="data-veto"),
            html.Span(id="data-veto-result", style={"marginLeft": "0.5em"}),
        ],
        style={"display": "flex", "gap": "0.5em", "alignItems": "center"},
    )


@callback(
    Output("data-veto-result", "children"),
    Input("data-veto", "n_clicks"),
    State("data-veto-id", "value"),
    State("data-veto-reason", "value"),
    prevent_initial_call=True,
)
@requires("operator")
def veto(_clicks: int | None, deletion_id: Any, reason: str | None) -> Any:
    """Veto an announced deletion (audited as the signed-in operator)."""
    from portal.data import deletion

    if not deletion_id or not (reason or "").strip():
        return ql.notice("give the deletion's id and a reason", "error")
    try:
        deletion.veto(routes.settings(), routes.identity(), int(deletion_id), reason or "")
    except PortalError as exc:
        return ql.notice(str(exc), "error")
    return f"deletion {int(deletion_id)} vetoed"
