"""Hhat stacks: backlog per stack kind, candidates as DM vs time, and the richest pointings.

Each part is its own list element: when Prometheus is down the backlog shows a one-line notice
and the database parts still render.
"""

import plotly.graph_objects as go

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
    return fig


def pointings(tr: ql.TimeRange, min_candidates: int):
    return ql.sql(
        "SELECT time, beam, max_dm, n_candidates FROM pointings WHERE time >= :start "
        "AND time < :end AND n_candidates >= :n AND max_dm IS NOT NULL ORDER BY time",
        start=tr.start,
        end=tr.end,
        n=min_candidates,
    )


def candidates(tr: ql.TimeRange, min_candidates: int):
    df = pointings(tr, min_candidates)
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
    return fig


def richest(tr: ql.TimeRange, min_candidates: int):
    """The 20 pointings with most candidates: a table the reader can sort."""
    df = pointings(tr, min_candidates)
    return df.nlargest(20, "n_candidates")


def layout(time_range: ql.TimeRange, min_candidates: int = 1):
    """Backlog from Prometheus, candidates from the database: each part may fail alone."""
    return [
        lambda: backlog(time_range),
        lambda: candidates(time_range, min_candidates),
        "#### Pointings with most candidates",
        lambda: richest(time_range, min_candidates),
    ]
