"""The frame around every page: navigation, the shared time-range picker, the page container.

The picker lives in the URL (``?range=6h`` or ``?range=custom&from=..&to=..``) so a link
reproduces the view; one callback keeps URL, picker and the ``TIME_RANGE`` store in step.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import dash
from dash import ALL, MATCH, Input, Output, State, ctx, dcc, html, no_update

from portal import quicklook as ql
from portal.auth.roles import requires
from portal.errors import PortalError
from portal.web import controls, loader, render
from portal.web.loader import Page

LOCATION = "_pages_location"  # the dcc.Location that Dash pages routes on


def _nav_link(page: Page) -> Any:
    cls = "portal-nav-link" + (" portal-nav-broken" if page.error else "")
    return dcc.Link(
        page.title, href=page.path, className=cls, id={"type": "portal-nav", "path": page.path}
    )


def layout(pages: list[Page]) -> html.Div:
    """Header with navigation and picker, then the current page."""
    shown = [p for p in pages if p.template is None]
    builtin = sorted((p for p in shown if p.section == "builtin"), key=lambda p: (p.order, p.title))
    plugins = sorted((p for p in shown if p.section != "builtin"), key=lambda p: (p.order, p.title))
    return html.Div(
        [
            html.Header(
                [
                    html.Span("obsportal", className="portal-brand"),
                    html.Nav([_nav_link(p) for p in builtin], className="portal-nav"),
                    html.Div(
                        [
                            dcc.Dropdown(
                                id="portal-range",
                                options=[{"label": f"last {k}", "value": k} for k in ql.RANGES]
                                + [{"label": "custom", "value": "custom"}],
                                value=ql.DEFAULT_RANGE,
                                clearable=False,
                                searchable=False,
                                style={"width": "10em", "color": "#1d2330"},
                            ),
                            dcc.Input(
                                id="portal-from",
                                placeholder="from 2026-03-01T12:00",
                                debounce=True,
                                style={"width": "12em"},
                            ),
                            dcc.Input(
                                id="portal-to",
                                placeholder="to (empty: now)",
                                debounce=True,
                                style={"width": "12em"},
                            ),
                            html.Button("Apply", id="portal-range-apply"),
                        ],
                        className="portal-range",
                    ),
                ],
                className="portal-header",
            ),
            html.Div(
                [
                    html.Span("Quicklooks:", className="portal-section-label"),
                    html.Nav(
                        [_nav_link(p) for p in plugins], className="portal-nav portal-quicklooks"
                    ),
                ],
                className="portal-subheader",
            ),
            html.Div(id="portal-range-error"),
            dcc.Store(id=ql.TIME_RANGE, data={"range": ql.DEFAULT_RANGE}),
            html.Main(dash.page_container, className="portal-main"),
        ],
        className="portal-shell",
    )


def _range_params(search: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """Split a query string into the picker's keys and everything else."""
    pairs = dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=True))
    picked: dict[str, str] = {k: pairs.pop(k) for k in ("range", "from", "to") if k in pairs}
    return picked, pairs


def register(app: dash.Dash) -> None:
    """Attach the picker callback to ``app`` (not to Dash's global list, which pages share)."""
    app.callback(
        Output(LOCATION, "search"),
        Output("portal-range", "value"),
        Output("portal-from", "value"),
        Output("portal-to", "value"),
        Output(ql.TIME_RANGE, "data"),
        Output({"type": "portal-nav", "path": ALL}, "href"),
        Output("portal-range-error", "children"),
        Input(LOCATION, "search"),
        Input("portal-range", "value"),
        Input("portal-range-apply", "n_clicks"),
        State("portal-from", "value"),
        State("portal-to", "value"),
    )(sync_range)
    # The controls generated from a layout's signature (portal.web.controls): a change goes
    # into the URL, and Dash pages' routing calls the layout again. One callback for all pages.
    app.callback(
        Output(LOCATION, "search", allow_duplicate=True),
        Input({"type": controls.PARAM, "name": ALL, "kind": ALL}, "value"),
        State(LOCATION, "search"),
        prevent_initial_call=True,
    )(controls.to_url)
    # Zoom on a resampled figure (portal.web.render.zoom): any worker re-aggregates the slice.
    app.callback(
        Output({"type": render.RESAMPLED, "page": MATCH, "part": MATCH}, "figure"),
        Input({"type": render.RESAMPLED, "page": MATCH, "part": MATCH}, "relayoutData"),
        State({"type": render.RESAMPLED, "page": MATCH, "part": MATCH}, "id"),
        State(LOCATION, "search"),
        prevent_initial_call=True,
    )(_zoom)


@requires("viewer")
def _zoom(relayout: dict[str, Any] | None, graph_id: dict[str, str], search: str | None) -> Any:
    return render.zoom(relayout, graph_id, search, loader.call_page)


@requires("viewer")
def sync_range(
    search: str | None, choice: str, _clicks: int | None, start: str | None, end: str | None
) -> tuple[Any, ...]:
    """URL -> picker on load and navigation; picker -> URL when the user changes it."""
    picked, rest = _range_params(search)
    new_search: Any = no_update
    if ctx.triggered_id in ("portal-range", "portal-range-apply"):
        if choice == "custom":
            if ctx.triggered_id == "portal-range" or not (start or end):
                return (no_update,) * 7  # wait for the user to type the times and press Apply
            picked = {"range": "custom", "from": start or "", "to": end or ""}
        else:
            picked = {"range": choice}
        new_search = "?" + urlencode({**rest, **{k: v for k, v in picked.items() if v}})
    error: Any = None
    try:
        tr = ql.TimeRange.parse(picked.get("range"), picked.get("from"), picked.get("to"))
    except PortalError as err:
        tr, error = ql.TimeRange.parse(), ql.notice(str(err), kind="error")
    data = {k: picked.get(k) for k in ("range", "from", "to") if picked.get(k)}
    data.setdefault("range", tr.label)
    suffix = "?" + urlencode({k: v for k, v in data.items()})
    hrefs = [o["id"]["path"] + suffix for o in ctx.outputs_list[5]]
    shown_from = tr.start.strftime("%Y-%m-%dT%H:%M") if tr.label == "custom" else ""
    shown_to = picked.get("to", "") if tr.label == "custom" else ""
    return new_search, tr.label, shown_from, shown_to, data, hrefs, error
