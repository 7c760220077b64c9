"""Pointing density on the sky: where the beams looked (RA/Dec) in the picked time range."""

import plotly.graph_objects as go

from portal import quicklook as ql

TITLE = "Pointing density (RA/Dec)"


def layout(time_range: ql.TimeRange, beam: int | None = None, bins: int = 72):
    """?beam=3 restricts to one beam; ?bins=36 makes coarser sky cells."""
    df = ql.sql(
        "SELECT ra_deg, dec_deg FROM pointings WHERE time >= :start AND time < :end "
        "AND (CAST(:beam AS int) IS NULL OR beam = :beam)",
        start=time_range.start,
        end=time_range.end,
        beam=beam,
    )
    fig = go.Figure(
        go.Histogram2d(
            x=df["ra_deg"],
            y=df["dec_deg"],
            nbinsx=bins,
            nbinsy=bins // 2,
            colorscale="Viridis",
            colorbar={"title": "pointings"},
        )
    )
    fig.update_layout(
        title=f"{len(df)} pointings",
        xaxis={"title": "RA (deg)", "range": [360, 0]},
        yaxis={"title": "Dec (deg)", "range": [-90, 90]},
        height=500,
    )
    return fig
