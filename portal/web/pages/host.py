"""One host: its time series from Prometheus and from the database's metric_samples."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from portal import quicklook as ql
from portal import routes
from portal.inventory import liveness
from portal.metrics.client import label_value
from portal.web import ui

TITLE = "Host"
CONTROLS = False  # its own inputs; no controls generated from layout()'s signature
PATH = "/host"
PATH_TEMPLATE = "/hosts/<name>"
ORDER = 1000  # reached from the hosts table, not the navigation

#: PromQL per graph; ``{h}`` becomes the host name as a quoted, escaped PromQL string.
SERIES = {
    "CPU busy (ratio)": 'obs_host_cpu_usage_ratio{{host={h},cpu="total"}}',
    "Memory used (bytes)": "obs_host_memory_used_bytes{{host={h}}}",
    "Load 1 min": "obs_host_load1{{host={h}}}",
}


def series_query(template: str, name: str) -> str:
    """``template`` for host ``name`` (a URL value: escaped, never pasted raw into PromQL)."""
    return template.format(h=label_value(name))


def _figure(title: str, df: Any, tr: ql.TimeRange, graph_id: str) -> dcc.Graph:
    """One line per series (Prometheus gives one per host and metric); holes stay holes."""
    fig = go.Figure()
    yaxis: dict[str, Any] = {}
    if not df.empty:
        if "(bytes)" in title:
            divisor, yaxis = ui.bytes_axis(df["value"])
            df = df.assign(value=df["value"] / divisor)
        group = [c for c in ("component", "mount", "labels") if c in df]
        df = ui.with_gaps(df, tr.step, group[:1])
        for key, part in df.groupby(group[0], sort=False) if group else [(title, df)]:
            fig.add_scatter(
                x=part["time"], y=part["value"], mode="lines", name=str(key), connectgaps=False
            )
    fig.update_layout(
        title=title,
        height=260,
        xaxis={"range": [tr.start, tr.end], "type": "date"},
        yaxis=yaxis,
        margin={"l": 70, "r": 20, "t": 40, "b": 30},
    )
    return dcc.Graph(figure=fig, id=graph_id)


def _prometheus(name: str, tr: ql.TimeRange) -> list[Any]:
    return [
        _figure(
            title, ql.promql(series_query(q, name), tr.start, tr.end, tr.step), tr, f"host-prom-{i}"
        )
        for i, (title, q) in enumerate(SERIES.items())
    ]


def _state(name: str) -> Any:
    """The host's state, as the Overview and Hosts pages and ``portal hosts list`` say it."""
    found = liveness.host_states(routes.settings(), only=name)
    if not found.hosts:
        return html.P(f"host {name!r} is not in the inventory", id="host-info")
    h = found.hosts[0]
    row = {"name": h.name, "role": h.role, "address": h.address, "state": h.state}
    row["declared"] = h.declared
    if found.source == "database":
        row["last sample"] = h.last_seen.isoformat(timespec="seconds") if h.last_seen else "never"
    parts = [ui.table(pd.DataFrame([row]), "host-info")]
    if found.problem is not None:
        parts.insert(0, ql.unavailable(found.problem))
    return html.Div(parts)


def _database(name: str, tr: ql.TimeRange) -> Any:
    df = ql.sql(
        "SELECT date_bin(:bucket, time, timestamp '2000-01-01') AS time, avg(value) AS value "
        "FROM metric_samples WHERE host = :host AND name = 'obs_host_cpu_usage_ratio' "
        "AND labels->>'cpu' = 'total' AND time >= :start AND time < :end GROUP BY 1 ORDER BY 1",
        host=name,
        start=tr.start,
        end=tr.end,
        bucket=f"{int(tr.step)} seconds",
    )
    return _figure("CPU busy, stored samples (database)", df, tr, "host-db-cpu")


def layout(time_range: ql.TimeRange, name: str = "", **params: Any) -> html.Div:
    info = ql.guard(lambda: _state(name))
    grafana = ui.grafana_link("obs-host", host=name)  # None: no Grafana configured or answering
    return html.Div(
        [
            html.H3(name),
            info,
            grafana,
            " · " if grafana is not None else None,
            dcc.Link(
                "Logs",
                href=f"/logs?{urlencode({'host': name})}&{time_range.query()}",
                id="host-logs-link",
            ),
            html.Div(ql.guard(lambda: _prometheus(name, time_range))),
            ql.guard(lambda: _database(name, time_range)),
        ]
    )
