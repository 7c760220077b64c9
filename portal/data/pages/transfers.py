"""Transfers: the queue by site and state ("waiting in queue" apart from "failing, will
retry"), copies in progress, throughput, ETA in hours and in days of production, and failures
by error class. Refreshes every 5 seconds."""

from __future__ import annotations

from typing import Any

import pandas as pd
from dash import Input, Output, callback, dcc, html

from portal import quicklook as ql
from portal import routes
from portal.auth.roles import requires
from portal.errors import PortalError
from portal.web import ui

TITLE = "Transfers"
PATH = "/transfers"
ORDER = 36
CONTROLS = False


def layout(time_range: ql.TimeRange, **_: Any) -> html.Div:
    return html.Div(
        [
            dcc.Interval(id="transfers-tick", interval=5_000),
            html.Div(id="transfers-body", children=_body()),
        ]
    )


def _body() -> list[Any]:
    from portal.data import queue as transfer_queue
    from portal.data.accounting import human

    try:
        snap = transfer_queue.snapshot(routes.settings().database_url)
    except PortalError as err:
        return [ql.unavailable(err)]
    eta = "–" if snap["eta_hours"] is None else f"{snap['eta_hours']:.1f} h"
    days = "–" if snap["backlog_days"] is None else f"{snap['backlog_days']:.2f}"
    queue = pd.DataFrame(snap["by_state"])
    if not queue.empty:
        queue["bytes_left"] = queue["bytes_left"].map(human)
    active = pd.DataFrame(
        [
            {
                "product": a["product"],
                "site": a["site"],
                "progress": f"{100 * a['bytes_done'] / a['bytes_total']:.0f}%"
                if a["bytes_total"]
                else "–",
                "size": human(a["bytes_total"]),
                "worker": a["worker"],
                "attempt": a["attempts"],
            }
            for a in snap["active"]
        ]
    )
    return [
        html.P(
            f"Throughput {human(snap['throughput_mb_s'] * 1e6)}/s over the last hour; backlog "
            f"{human(snap['backlog_bytes'])}, ETA {eta}, {days} day(s) of production.",
            id="transfers-summary",
        ),
        html.H3("Queue"),
        ui.table(queue, "transfers-queue", empty="no transfer requests"),
        html.H3("Copying now"),
        ui.table(active, "transfers-active", empty="nothing is being copied"),
        html.H3("Failures by error class"),
        ui.table(pd.DataFrame(snap["failing"]), "transfers-failing", empty="no failures"),
    ]


@callback(
    Output("transfers-body", "children"),
    Input("transfers-tick", "n_intervals"),
    prevent_initial_call=True,
)
@requires("viewer")
def refresh(_tick: int | None) -> list[Any]:
    """Read the queue again."""
    return _body()
