"""Hhat stacks: backlog per stack kind, and candidates as DM vs time sized by significance."""

import plotly.graph_objects as go
from dash import dcc, html

from portal import quicklook as ql

TITLE = "Hhat backlog and candidates"


def backlog(tr: ql.TimeRange):
    df = ql.promql("sum by (stack) (obs_hhat_stacks_pending)", tr.start, tr.end, tr.step)
    fig = go.Figure()
    for stack, part in df.groupby("stack") if "stack" in df else []:
        fig.add_scatter(x=part["time"], y=part["value"], mode="lines", name=stack)
    fig.update_layout(
        title="Hhat stacks pending", height=300, xaxis={"range": [tr.start, tr.end], "type": "date"}
    )
    return dcc.Graph(figure=fig, id="hhat-backlog-graph")


def candidates(tr: ql.TimeRange, min_candidates: int):
    df = ql.sql(
        "SELECT time, beam, max_dm, n_candidates FROM pointings WHERE time >= :start "
        "AND time < :end AND n_candidates >= :n AND max_dm IS NOT NULL ORDER BY time",
        start=tr.start,
        end=tr.end,
        n=min_candidates,
    )
    size = 4 + 20 * (df["n_candidates"] / max(1, df["n_candidates"].max())) if len(df) else []
    fig = go.Figure(
        go.Scattergl(
            x=df["time"],
            y=df["max_dm"],
            mode="markers",
            marker={"size": size, "color": df["beam"]},
            text=[
                f"beam {b}: {n} candidates"
                for b, n in zip(df["beam"], df["n_candidates"], strict=True)
            ],
        )
    )
    fig.update_layout(
        title=f"Candidates: DM vs time ({len(df)} pointings)",
        height=400,
        xaxis={"range": [tr.start, tr.end], "type": "date"},
        yaxis={"title": "DM (pc/cm³)"},
    )
    return dcc.Graph(figure=fig, id="hhat-candidates-graph")


def layout(time_range: ql.TimeRange, min_candidates: int = 1):
    """Backlog comes from Prometheus, candidates from the database: each may fail alone."""
    return html.Div(
        [
            ql.guard(lambda: backlog(time_range)),
            ql.guard(lambda: candidates(time_range, min_candidates)),
        ]
    )
