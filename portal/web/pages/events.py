"""Events: the event stream, filterable by topic, refreshed live every two seconds.

A refresh sends at most ``LIMIT`` events, each payload cut to ``PAYLOAD_CHARS`` characters in the
database, so a busy stream (50,000 alerts) costs one bounded answer; older events are a page away.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from dash import Input, Output, State, callback, ctx, dcc, html

from portal import quicklook as ql
from portal.auth.roles import requires
from portal.globs import like_pattern
from portal.web import ui

TITLE = "Events"
CONTROLS = False  # its own inputs; no controls generated from layout()'s signature
ORDER = 40
LIMIT = 200  # events per refresh
PAYLOAD_CHARS = 300  # of each payload shown; the rest stays in the database


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
            dcc.Store(id="events-before"),  # page: events older than this id (None: newest)
            dcc.Store(id="events-oldest"),  # the oldest id shown
            html.Div(
                [
                    html.Span(id="events-note", style={"marginRight": "1em"}),
                    html.Button("newest", id="events-newest", n_clicks=0),
                    html.Button("older", id="events-older", n_clicks=0),
                ],
                style={"margin": "0.5em 0"},
            ),
            html.Div(id="events-list"),
        ]
    )


@callback(
    Output("events-before", "data"),
    Input("events-older", "n_clicks"),
    Input("events-newest", "n_clicks"),
    Input("events-topic", "value"),
    State("events-oldest", "data"),
    prevent_initial_call=True,
)
@requires("viewer")
def page(_older: int, _newest: int, _topic: str | None, oldest: int | None) -> int | None:
    """``older``: the page below the oldest event shown; ``newest`` or a new topic: the top."""
    return oldest if ctx.triggered_id == "events-older" and oldest else None


def newest(topic: str | None, tr: ql.TimeRange, before: int | None) -> tuple[pd.DataFrame, bool]:
    """Up to ``LIMIT`` events of the range, newest first (below id ``before``), payloads cut;
    and whether older ones exist."""
    df = ql.sql(
        "SELECT id, time, topic, source, "
        "CASE WHEN length(payload::text) > :w THEN left(payload::text, :w) || '…' "
        "ELSE payload::text END AS payload FROM events "
        "WHERE topic LIKE :like AND time >= :start AND time < :end AND id < :before "
        "ORDER BY id DESC LIMIT :n",
        like=like_pattern(topic or "*", always=True),
        start=tr.start,
        end=tr.end,
        before=before or 2**63 - 1,
        w=PAYLOAD_CHARS,
        n=LIMIT + 1,
    )
    return df.head(LIMIT).copy(), len(df) > LIMIT


@callback(
    Output("events-list", "children"),
    Output("events-note", "children"),
    Output("events-oldest", "data"),
    Input("events-topic", "value"),
    Input("events-tick", "n_intervals"),
    Input(ql.TIME_RANGE, "data"),
    Input("events-before", "data"),
)
@requires("viewer")
def refresh(
    topic: str | None, _tick: int | None, tr_data: dict[str, Any] | None, before: int | None
) -> tuple[Any, str, int | None]:
    """Newest events first within the picked range; a topic pattern narrows them."""
    tr = ql.TimeRange.from_store(tr_data)
    df, more = newest(topic, tr, before)
    oldest = int(df["id"].iloc[-1]) if not df.empty else None
    where = "the newest" if before is None else "older"
    note = f"{len(df)} {where} events, payloads cut at {PAYLOAD_CHARS} characters" if oldest else ""
    if more:
        note += f"; at most {LIMIT} a page: 'older' shows more"
    df["time"] = pd.to_datetime(df["time"]).astype(str).str[:19] if not df.empty else df["time"]
    return ui.table(df, "events-table", empty="no events in this range"), note, oldest
