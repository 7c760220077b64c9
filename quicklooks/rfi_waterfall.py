"""RFI-masked fraction waterfall: beam x time, to spot bad beams and bad hours at once."""

import plotly.graph_objects as go

from portal import quicklook as ql

TITLE = "RFI waterfall (beam x time)"


def layout(time_range: ql.TimeRange, buckets: int = 120):
    """Averages each beam's rfi_fraction into ``buckets`` time bins over the picked range."""
    width = max(60, int(time_range.seconds / buckets))
    df = ql.sql(
        "SELECT date_bin(CAST(:width AS interval), time, timestamp '2000-01-01') AS t, beam, "
        "avg(rfi_fraction) AS rfi FROM pointings WHERE time >= :start AND time < :end "
        "AND rfi_fraction IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
        width=f"{width} seconds",
        start=time_range.start,
        end=time_range.end,
    )
    grid = df.pivot(index="beam", columns="t", values="rfi")
    fig = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=grid.columns,
            y=grid.index,
            zmin=0,
            zmax=1,
            colorscale="Inferno",
            colorbar={"title": "masked"},
        )
    )
    fig.update_layout(
        title="RFI-masked fraction",
        xaxis={"range": [time_range.start, time_range.end], "type": "date"},
        yaxis={"title": "beam"},
        height=500,
    )
    return fig
