"""Components: real-time vs batch, instances per host, up state and backlog."""

from __future__ import annotations

from typing import Any

import pandas as pd
from dash import html

from portal import quicklook as ql
from portal.web import ui

TITLE = "Components"
ORDER = 30


def _inventory() -> pd.DataFrame:
    return ql.sql(
        "SELECT kind, name, host, desired_state FROM components ORDER BY kind, name, host"
    )


def _up() -> dict[tuple[str, str], float]:
    df = ql.promql("obs_process_up")
    if df.empty or "component" not in df:
        return {}
    return {(r.host, r.component): r.value for r in df.itertuples()}


def _backlog() -> Any:
    stacks = ql.promql("sum by (stack) (obs_hhat_stacks_pending)")
    lag = ql.promql("max by (beam) (obs_l1_lag_seconds)")
    rows = (
        [{"queue": f"Hhat {r.stack} stacks", "backlog": int(r.value)} for r in stacks.itertuples()]
        if "stack" in stacks
        else []
    )
    rows += (
        [{"queue": f"beam {r.beam} lag", "backlog": f"{r.value:.1f} s"} for r in lag.itertuples()]
        if "beam" in lag
        else []
    )
    return ui.table(pd.DataFrame(rows), "components-backlog", empty="no backlog metrics yet")


def layout(time_range: ql.TimeRange, **params: Any) -> html.Div:
    try:
        comps = _inventory()
    except ql.PortalError as err:
        return html.Div([ql.unavailable(err), html.H3("Backlog"), ql.guard(_backlog)])
    notes: list[Any] = []
    try:
        up = _up()
        comps["running"] = [
            {1.0: "yes", 0.0: "NO"}.get(up.get((h, n), -1.0), "–")
            for h, n in zip(comps["host"], comps["name"], strict=True)
        ]
    except ql.PortalError as err:
        notes.append(ql.unavailable(err))
    per_host = (
        comps.pivot_table(
            index="name", columns="host", values="kind", aggfunc="count", fill_value=0
        ).reset_index()
        if not comps.empty
        else pd.DataFrame()
    )
    parts: list[Any] = [*notes]
    if not comps.empty:
        comps["logs"] = [
            f"/logs?host={h}&component={n}&{time_range.query()}"
            for h, n in zip(comps["host"], comps["name"], strict=True)
        ]
    for kind in ("real-time", "batch"):
        parts += [
            html.H3(f"{kind} components"),
            ui.table(
                comps[comps["kind"] == kind],
                f"components-{kind}",
                links={"host": lambda h: f"/hosts/{h}", "logs": lambda href: href},
                empty=f"no {kind} components",
                link_text={"logs": "logs"},
            ),
        ]
    parts += [html.H3("Instances per host"), ui.table(per_host, "components-per-host")]
    parts += [html.H3("Backlog"), ql.guard(_backlog)]
    return html.Div(parts)
