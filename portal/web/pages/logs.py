"""Logs: the CLI's filters on the log store, with live tail and a ``.log`` download."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from dash import Input, Output, State, callback, dcc, html

from portal import quicklook as ql
from portal import routes
from portal.auth.roles import requires
from portal.errors import PortalError
from portal.logs.filters import build_query
from portal.logs.format import text_line
from portal.logs.query import LEVELS, stream
from portal.logs.selector import SelectorError

TITLE = "Logs"
CONTROLS = False  # its own inputs; no controls generated from layout()'s signature
ORDER = 45
SHOWN = 500  # lines on the page; the download has them all
TAIL_MS = 2000
MONO = {"fontFamily": "monospace", "fontSize": "12px"}


def _input(ident: str, value: str, placeholder: str, width: str = "12em") -> dcc.Input:
    return dcc.Input(
        id=ident,
        value=value,
        placeholder=placeholder,
        debounce=True,
        style={"width": width, "marginRight": "0.5em"},
    )


def layout(
    time_range: ql.TimeRange,
    host: str = "",
    component: str = "",
    level: str = "",
    grep: str = "",
    query: str = "",
    live: bool = False,
    regex: bool = False,
    **params: Any,
) -> html.Div:
    """Filters as in ``portal logs``; links from host and component pages prefill them."""
    return html.Div(
        [
            html.Div(
                [
                    _input("logs-host", host, "host or glob (cn0*)"),
                    _input("logs-component", component, "component or glob (l1-*)"),
                    dcc.Dropdown(
                        id="logs-level",
                        options=[{"label": "any level", "value": ""}]
                        + [{"label": f"{lv} and above", "value": lv} for lv in LEVELS[1:]],
                        value=level.upper(),
                        clearable=False,
                        style={"width": "13em", "display": "inline-block"},
                    ),
                    _input("logs-grep", grep, "text in message"),
                    dcc.Checklist(
                        id="logs-regex",
                        options=[{"label": " regex", "value": "re"}],
                        value=["re"] if regex else [],
                        style={"display": "inline-block", "marginRight": "0.5em"},
                    ),
                    _input("logs-query", query, '{host="cn07"} |= "dropped"', "22em"),
                    dcc.Checklist(
                        id="logs-live",
                        options=[{"label": " live tail", "value": "live"}],
                        value=["live"] if live else [],
                        style={"display": "inline-block", "marginLeft": "0.5em"},
                    ),
                    html.A(
                        "download .log",
                        id="logs-download",
                        href="/api/logs",
                        download="",
                        style={"marginLeft": "1em"},
                    ),
                ],
                style={"display": "flex", "alignItems": "center", "flexWrap": "wrap"},
            ),
            dcc.Interval(id="logs-tick", interval=TAIL_MS, disabled=not live),
            html.Div(id="logs-status", style={"margin": "0.5em 0"}),
            html.Pre(id="logs-out", style={**MONO, "whiteSpace": "pre", "overflowX": "auto"}),
        ]
    )


@callback(Output("logs-tick", "disabled"), Input("logs-live", "value"))
@requires("viewer")
def _toggle_tail(live: list[str] | None) -> bool:
    return "live" not in (live or [])


def api_params(
    tr: ql.TimeRange,
    host: str,
    component: str,
    level: str,
    grep: str,
    query: str,
    live: bool,
    regex: bool = False,
) -> dict[str, str]:
    """The ``/api/logs`` parameters for what the page shows (live tail: up to now)."""
    params = {"host": host, "component": component, "level": level, "grep": grep}
    if grep and regex:
        params["re"] = "1"
    params |= {"query": query, "since": tr.start.isoformat()}
    if not live:
        params["until"] = tr.end.isoformat()
    return {k: v for k, v in params.items() if v}


@callback(
    Output("logs-out", "children"),
    Output("logs-status", "children"),
    Output("logs-download", "href"),
    Input("logs-host", "value"),
    Input("logs-component", "value"),
    Input("logs-level", "value"),
    Input("logs-grep", "value"),
    Input("logs-query", "value"),
    Input("logs-regex", "value"),
    Input("logs-tick", "n_intervals"),
    Input(ql.TIME_RANGE, "data"),
    State("logs-live", "value"),
)
@requires("viewer")
def refresh(
    host: str | None,
    component: str | None,
    level: str | None,
    grep: str | None,
    query: str | None,
    regex_value: list[str] | None,
    _tick: int | None,
    tr_data: dict[str, Any] | None,
    live_value: list[str] | None,
) -> tuple[Any, Any, str]:
    """The newest ``SHOWN`` matching lines of the range, oldest first, as the CLI prints them."""
    tr = ql.TimeRange.from_store(tr_data)
    live = "live" in (live_value or [])
    h, c, lv, g, qs = ((v or "").strip() for v in (host, component, level, grep, query))
    params = api_params(tr, h, c, lv, g, qs, live, "re" in (regex_value or []))
    href = "/api/logs?" + urlencode({**params, "download": "1"})
    try:
        q = build_query(
            params.get("query"),
            [params.get("host", "")],
            [params.get("component", "")],
            params.get("level"),
            params.get("since"),
            params.get("until"),
            params.get("grep"),
            limit=SHOWN,
            regex="re" in params,
        )
        recs = list(stream(routes.settings().database_url, replace(q, newest_first=True)))
    except SelectorError as exc:
        return "", html.Pre(str(exc), className="portal-notice portal-notice-error"), href
    except PortalError as exc:
        return "", ql.unavailable(exc) if _is_backend(exc) else ql.notice(str(exc), "error"), href
    recs.reverse()
    text = "".join(text_line(r) for r in recs)
    more = " (newest shown; download for all)" if len(recs) == SHOWN else ""
    status = f"{len(recs)} lines{more}" if recs else "no lines match in this range"
    return text, status, href


def _is_backend(exc: PortalError) -> bool:
    from portal.errors import BackendUnavailable, DatabaseUnavailable

    return isinstance(exc, BackendUnavailable | DatabaseUnavailable)
