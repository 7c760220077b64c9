"""Events: the event stream, filterable by topic, refreshed live every two seconds."""

from __future__ import annotations

from typing import Any

import pandas as pd
from dash import Input, Output, callback, dcc, html

from portal import quicklook as ql
from portal.auth.roles import requires
from portal.globs import like_pattern
from portal.web import ui

TITLE = "Events"
CONTROLS = False  # its own inputs; no controls generated from layout()'s signature
ORDER = 40
LIMIT = 200


def _topics() -> list[str]:
    df = ql.sql("SELECT DISTINCT topic FROM events ORDER BY topic LIMIT 500")
    return list(df["topic"])


def layout(time_range: ql.TimeRange, topic: str = "", **params: Any) -> html.Div:
    options = ql.guard(_topics)
    choices = options if isinstance(options, list) else []
    return html.Div(
        [
            html.Div(options) if not isinstance(options, list) else None,
            dcc.Dropdown(
                id="events-topic",
                options=[{"label": "all topics", "value": ""}]
                + [
                    {"label": t, "value": t}
                    for t in sorted({*choices, *([topic] if topic else [])})
                ],
                value=topic,
                placeholder="topic (ops.* patterns work in the URL: ?topic=ops.*)",
                style={"maxWidth": "30em"},
            ),
            dcc.Interval(id="events-tick", interval=2000),
            html.Div(id="events-list"),
        ]
    )


@callback(
    Output("events-list", "children"),
    Input("events-topic", "value"),
    Input("events-tick", "n_intervals"),
    Input(ql.TIME_RANGE, "data"),
)
@requires("viewer")
def refresh(topic: str | None, _tick: int | None, tr_data: dict[str, Any] | None) -> Any:
    """Newest events first within the picked range; a topic pattern narrows them."""
    tr = ql.TimeRange.from_store(tr_data)
    like = like_pattern(topic or "*", always=True)
    df = ql.sql(
        "SELECT id, time, topic, source, payload::text AS payload FROM events "
        "WHERE topic LIKE :like AND time >= :start AND time < :end ORDER BY id DESC LIMIT :n",
        like=like,
        start=tr.start,
        end=tr.end,
        n=LIMIT,
    )
    df["time"] = pd.to_datetime(df["time"]).astype(str).str[:19] if not df.empty else df["time"]
    return ui.table(df, "events-table", empty="no events in this range")
