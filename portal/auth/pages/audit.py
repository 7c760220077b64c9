"""Audit: the append-only audit log, newest first, filtered as ``portal audit`` does; live."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from dash import Input, Output, callback, dcc, html

from portal import quicklook as ql
from portal import routes
from portal.auth import audit
from portal.auth.roles import requires
from portal.errors import PortalError
from portal.web import ui

TITLE = "Audit"
CONTROLS = False  # its own inputs; no controls generated from layout()'s signature
PATH = "/audit"
ORDER = 47  # after Logs (45)
SHOWN = 200
TICK_MS = 2000
COLUMNS = ["time", "actor", "role", "source", "action", "target", "outcome", "reason", "params"]


def _input(ident: str, value: str, placeholder: str) -> dcc.Input:
    return dcc.Input(
        id=ident,
        value=value,
        placeholder=placeholder,
        debounce=True,
        style={"width": "14em", "marginRight": "0.5em"},
    )


def layout(
    time_range: ql.TimeRange, actor: str = "", action: str = "", target: str = "", **params: Any
) -> html.Div:
    """Text filters take exact values or globs (``user:*``, ``login.*``), as the CLI does."""
    return html.Div(
        [
            html.Div(
                [
                    _input("audit-actor", actor, "actor or glob (user:*)"),
                    _input("audit-action", action, "action or glob (login.*)"),
                    _input("audit-target", target, "target or glob"),
                ],
                style={"display": "flex", "alignItems": "center", "flexWrap": "wrap"},
            ),
            dcc.Interval(id="audit-tick", interval=TICK_MS),
            html.Div(id="audit-status", style={"margin": "0.5em 0"}),
            html.Div(id="audit-list", children=entries_table(time_range, actor, action, target)),
        ]
    )


def frame(entries: list[audit.Logged]) -> pd.DataFrame:
    rows = [audit.as_dict(e) for e in entries]
    df = pd.DataFrame(rows, columns=COLUMNS)
    if not df.empty:
        df["time"] = df["time"].str[:19].str.replace("T", " ")
        df["params"] = [json.dumps(e.params, sort_keys=True) for e in entries]
    return df


def entries_table(tr: ql.TimeRange, actor: str, action: str, target: str) -> Any:
    """The newest ``SHOWN`` matching entries of the range, newest first."""
    try:
        found = audit.query(
            routes.settings().database_url,
            actor=actor.strip() or None,
            action=action.strip() or None,
            target=target.strip() or None,
            since=tr.start,
            until=tr.end,
            limit=SHOWN,
            newest_first=True,
        )
    except PortalError as exc:
        return ql.unavailable(exc)
    return ui.table(frame(found), "audit-table", empty="no audit entries match in this range")


@callback(
    Output("audit-list", "children"),
    Input("audit-actor", "value"),
    Input("audit-action", "value"),
    Input("audit-target", "value"),
    Input("audit-tick", "n_intervals"),
    Input(ql.TIME_RANGE, "data"),
)
@requires("viewer")
def refresh(
    actor: str | None,
    action: str | None,
    target: str | None,
    _tick: int | None,
    tr_data: dict[str, Any] | None,
) -> Any:
    tr = ql.TimeRange.from_store(tr_data)
    return entries_table(tr, actor or "", action or "", target or "")
