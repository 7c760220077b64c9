"""Beam data rate over ~4 months at 1 s cadence: 10 million points, re-aggregated on zoom.

Stateless under several gunicorn workers (plotly-resampler issues #27, #300, #352): no figure
object is kept per user; every zoom sends the visible x-range and whichever worker answers
re-aggregates that slice of the data source with plotly-resampler's MinMaxLTTB aggregator.
"""

from functools import lru_cache

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, callback, dcc, html
from plotly_resampler.aggregation import MinMaxLTTB

from portal import quicklook as ql

TITLE = "Beam data rate (10 M points)"
N_OUT = 2000  # points sent to the browser per view
CADENCE_S = 1


@lru_cache(maxsize=2)
def series(beam: int, points: int) -> tuple[np.datetime64, np.ndarray]:
    """The data source: start time and float32 rates (MB/s), 1 s apart, ending this hour.

    Deterministic per beam, so every worker rebuilds the same series; a station with recorded
    rates would read them here instead (e.g. np.load of an archived beam product).
    """
    rng = np.random.default_rng(beam)
    t = np.arange(points, dtype=np.float32)
    day = np.sin(2 * np.pi * t / 86_400, dtype=np.float32)
    rate = 48 + 6 * day + rng.normal(0, 1.5, points).astype(np.float32)
    for start in rng.integers(0, points, 40):  # outages: the rate drops to zero
        rate[start : start + int(rng.integers(60, 3600))] = 0
    end = np.datetime64(pd.Timestamp.now(tz="UTC").floor("h").tz_localize(None), "s")
    return end - np.timedelta64(points * CADENCE_S, "s"), rate


def view(beam: int, points: int, x0=None, x1=None) -> go.Figure:
    """Aggregate the [x0, x1] slice (whole series when None) to N_OUT points."""
    t0, rate = series(beam, points)
    lo, hi = 0, len(rate)
    if x0 is not None and x1 is not None:
        lo = int(np.clip((pd.Timestamp(x0).to_datetime64() - t0) / np.timedelta64(1, "s"), 0, hi))
        hi = int(
            np.clip((pd.Timestamp(x1).to_datetime64() - t0) / np.timedelta64(1, "s") + 1, lo, hi)
        )
    idx = np.arange(lo, hi)
    if hi - lo > N_OUT:
        idx = lo + MinMaxLTTB().arg_downsample(rate[lo:hi], n_out=N_OUT)
    x = t0 + idx.astype("timedelta64[s]") * CADENCE_S
    # SVG Scatter: 2000 points draw faster than a WebGL context starts (headless: software GL)
    fig = go.Figure(go.Scatter(x=x, y=rate[idx], mode="lines", name=f"beam {beam}"))
    fig.update_layout(
        title=f"Beam {beam}: {hi - lo:,} points in view, {len(idx):,} drawn",
        yaxis={"title": "MB/s"},
        height=450,
        uirevision=f"{beam}-{points}",
    )
    return fig


@lru_cache(maxsize=8)
def full_view(beam: int, points: int) -> go.Figure:
    """The unzoomed view, derived from the data source: identical in every worker."""
    return view(beam, points)


def layout(beam: int = 0, points: int = 10_000_000):
    """?beam=N picks the beam; ?points=N the series length (max 50 M)."""
    points = max(1000, min(points, 50_000_000))
    return html.Div(
        [
            dcc.Store(id="bdr-source", data={"beam": beam, "points": points}),
            dcc.Graph(id="bdr-graph", figure=full_view(beam, points)),
        ]
    )


@callback(
    Output("bdr-graph", "figure"),
    Input("bdr-graph", "relayoutData"),
    State("bdr-source", "data"),
    prevent_initial_call=True,
)
def zoom(relayout, source):
    """Any worker can answer: the request carries everything needed (beam, range)."""
    relayout = relayout or {}
    if "xaxis.range[0]" in relayout:
        return view(
            source["beam"], source["points"], relayout["xaxis.range[0]"], relayout["xaxis.range[1]"]
        )
    if "xaxis.range" in relayout:
        return view(source["beam"], source["points"], *relayout["xaxis.range"])
    if relayout.get("xaxis.autorange"):
        return full_view(source["beam"], source["points"])
    raise ql.PreventUpdate
