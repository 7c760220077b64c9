"""Beam data rate over ~4 months at 1 s cadence: 10 million points, re-aggregated on zoom.

Stateless under several gunicorn workers (plotly-resampler issues #27, #300, #352): layout()
returns a plotly-resampler FigureResampler and the portal keeps no figure per user. Every zoom
sends the visible x-range with the page's URL; whichever worker answers calls layout() again
(cheap: series() is deterministic and cached per worker) and plotly-resampler re-aggregates that
slice with its MinMaxLTTB aggregator to N_OUT points.
"""

from functools import lru_cache

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly_resampler import FigureResampler

TITLE = "Beam data rate (10 M points)"
N_OUT = 2000  # points sent to the browser per view


@lru_cache(maxsize=2)
def series(beam: int, points: int) -> tuple[np.ndarray, np.ndarray]:
    """The data source: times 1 s apart ending this hour, and float32 rates (MB/s).

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
    times = end - np.timedelta64(points, "s") + np.arange(points).astype("timedelta64[s]")
    return times, rate


def layout(beam: int = 0, points: int = 10_000_000):
    """?beam=N picks the beam; ?points=N the series length (1000 to 50 M)."""
    points = max(1000, min(points, 50_000_000))
    times, rate = series(beam, points)
    fig = FigureResampler(default_n_shown_samples=N_OUT)
    # SVG Scatter: 2000 points draw faster than a WebGL context starts (headless: software GL)
    fig.add_trace(go.Scatter(mode="lines", name=f"beam {beam}"), hf_x=times, hf_y=rate)
    fig.update_layout(
        title=f"Beam {beam}: {points:,} points at 1 s", yaxis_title="MB/s", height=450
    )
    return fig
