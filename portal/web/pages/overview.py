"""Overview: the cluster at a glance; every tile links to its detail page and Grafana."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import dcc, html

from portal import quicklook as ql
from portal import routes
from portal.inventory import liveness
from portal.web import ui

TITLE = "Overview"
PATH = "/"
ORDER = 10

L1_RATE = "sum(rate(obs_l1_received_bytes_total[5m]))"


def _hosts() -> Any:
    """Live: collectors that answer, declared maintenance; see portal/inventory/liveness.py."""
    found = liveness.host_states(routes.settings())
    if found.problem is None:
        return found.summary()
    return html.Span([found.summary(), ql.unavailable(found.problem)])


def _scalar(promql: str) -> float | None:
    df = ql.promql(promql)
    return None if df.empty else float(df["value"].iloc[0])


def _alerts() -> str:
    firing = _scalar('count(ALERTS{alertstate="firing"})') or 0
    return f"{int(firing)} firing"


def _backlog() -> str:
    value = _scalar("sum(obs_hhat_stacks_pending)")
    return "–" if value is None else f"{int(value)} stacks"


def _storage() -> str:
    value = _scalar("sum(obs_storage_used_bytes) / sum(obs_storage_capacity_bytes)")
    return "–" if value is None else f"{value:.0%} full"


def _events() -> Any:
    df = ql.sql("SELECT time, topic, source FROM events ORDER BY id DESC LIMIT 10")
    df["time"] = df["time"].astype(str).str[:19]
    return ui.table(df, "overview-events", empty="no events yet")


def _rate_graph(tr: ql.TimeRange) -> Any:
    df = ql.promql(L1_RATE, start=tr.start, end=tr.end, step=tr.step)
    divisor, yaxis = ui.bytes_axis(df["value"], per_second=True)
    df = ui.with_gaps(df.assign(value=df["value"] / divisor), tr.step)
    fig = go.Figure(
        go.Scatter(x=df["time"], y=df["value"], mode="lines", name="L1", connectgaps=False)
    )
    fig.update_layout(
        title=f"L1 data rate, last {tr.label}" if tr.label != "custom" else "L1 data rate",
        xaxis={"range": [tr.start, tr.end], "type": "date"},
        yaxis={**yaxis, "rangemode": "tozero"},
        height=300,
        margin={"l": 50, "r": 20, "t": 40, "b": 30},
    )
    return dcc.Graph(figure=fig, id="overview-l1-rate")


def layout(time_range: ql.TimeRange, **params: Any) -> html.Div:
    """Each tile is guarded separately: one dead backend blanks only its own tiles."""
    rate = ql.guard(lambda: ui.human_bytes(_scalar(L1_RATE), per_second=True))
    tiles = [
        ui.tile("Hosts", ql.guard(_hosts), "/hosts", "obs-host", "tile-hosts"),
        ui.tile("Alerts", ql.guard(_alerts), "/alerts", "obs-overview", "tile-alerts"),
        ui.tile("L1 data rate", rate, "/components", "obs-realtime", "tile-l1-rate"),
        ui.tile("Batch backlog", ql.guard(_backlog), "/components", "obs-batch", "tile-backlog"),
        ui.tile("Storage", ql.guard(_storage), "/hosts", "obs-storage", "tile-storage"),
    ]
    return html.Div(
        [
            html.Div(tiles, className="portal-tiles"),
            ql.guard(lambda: _rate_graph(time_range)),
            html.H3([dcc.Link("Last events", href="/events")]),
            ql.guard(_events),
        ]
    )
