"""What a page's ``layout`` returns, turned into Dash components: quicklooks need no Dash.

``layout`` may return a plotly ``Figure`` (shown in a graph), a pandas ``DataFrame`` (a sortable
table), a ``str`` (Markdown), a Dash component (as is), ``None`` (nothing), a plotly-resampler
``FigureResampler`` (re-aggregated on zoom, see ``zoom``) or a list of these. Each element of a
list is rendered on its own: an element may be a zero-argument callable, evaluated in isolation,
and one that raises becomes a one-line notice (``PortalError``) or an error card at its place
while the others render.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dash
import pandas as pd
from dash import dash_table, dcc, html
from dash.development.base_component import Component
from plotly.basedatatypes import BaseFigure

from portal import quicklook as ql
from portal.errors import PortalError

log = logging.getLogger("portal.web.render")

#: Rows a DataFrame table sends to the browser at most (the rest is summarised in a note).
MAX_TABLE_ROWS = 10_000
RESAMPLED = "portal-resampled"  # pattern-matching id type of resampled graphs
SHOWN = "a Figure, DataFrame, str, Dash component or a list of these"


class Part:
    """Where an element sits on its page: the page's registry key, file, and index path."""

    def __init__(self, page_key: str, page_name: str, file: Path, index: tuple[int, ...]) -> None:
        self.page_key = page_key
        self.page_name = page_name
        self.file = file
        self.index = index

    @property
    def key(self) -> str:
        return ".".join(map(str, self.index)) or "0"

    def child(self, i: int) -> Part:
        return Part(self.page_key, self.page_name, self.file, (*self.index, i))


def _resampler_type() -> type | None:
    """plotly-resampler's FigureResampler, when some page imported it (else nothing to detect)."""
    mod = sys.modules.get("plotly_resampler")
    return getattr(mod, "FigureResampler", None) if mod else None


def is_resampled(value: Any) -> bool:
    kind = _resampler_type()
    return kind is not None and isinstance(value, kind)


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return None if isinstance(value, float) and pd.isna(value) else value
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    if isinstance(value, pd.Timestamp):
        return value.isoformat(sep=" ")
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else str(value)


def table(df: pd.DataFrame, table_id: str) -> html.Div:
    """A DataFrame as a table the reader can sort by clicking a column header."""
    shown = df.head(MAX_TABLE_ROWS)
    columns = []
    for col in shown.columns:
        kind = shown[col].dtype
        numeric = pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_bool_dtype(kind)
        columns.append({"name": str(col), "id": str(col), "type": "numeric" if numeric else "text"})
    records = [
        {str(c): _cell(v) for c, v in zip(shown.columns, row, strict=True)}
        for row in shown.itertuples(index=False, name=None)
    ]
    note = (
        [html.P(f"first {MAX_TABLE_ROWS:,} of {len(df):,} rows", className="portal-note")]
        if len(df) > MAX_TABLE_ROWS
        else []
    )
    grid = dash_table.DataTable(  # type: ignore[attr-defined]
        id=table_id,
        data=records,
        columns=columns,
        sort_action="native",
        page_action="native",
        page_size=50,
        style_table={"overflowX": "auto"},
        style_cell={"textAlign": "left", "fontFamily": "inherit", "padding": "4px 8px"},
        style_header={"fontWeight": "bold"},
    )
    return html.Div([grid, *note], className="portal-dataframe")


def _figure_style(fig: BaseFigure) -> dict[str, Any]:
    height = fig.layout.height
    return {"height": f"{height}px"} if height else {}


def element(value: Any, part: Part) -> Any:
    """One (already evaluated) value as a component; lists render each element on its own."""
    if value is None or isinstance(value, Component):
        return value
    if isinstance(value, list | tuple):
        return [evaluate(v, part.child(i)) for i, v in enumerate(value)]
    if is_resampled(value):
        return dcc.Graph(
            id={"type": RESAMPLED, "page": part.page_key, "part": part.key},
            figure=value,
            style=_figure_style(value),
        )
    if isinstance(value, BaseFigure):
        return dcc.Graph(figure=value, style=_figure_style(value))
    if isinstance(value, pd.DataFrame):
        return table(value, f"{part.page_name}-table-{part.key.replace('.', '-')}")
    if isinstance(value, pd.Series):
        return table(value.to_frame(), f"{part.page_name}-table-{part.key.replace('.', '-')}")
    if isinstance(value, str):
        return dcc.Markdown(value)
    raise PortalError(f"layout returned a {type(value).__name__}; the portal shows {SHOWN}")


def failure(exc: BaseException, part: Part, what: str) -> Any:
    """A PortalError as its one-line notice; anything else as an error card naming the file."""
    if isinstance(exc, PortalError):
        return ql.unavailable(exc)
    log.error("page %s (%s): %s failed", part.page_name, part.file, what)
    return ql.error_card(f"{part.file.name}: {what} failed", exc)


def evaluate(value: Any, part: Part) -> html.Div:
    """``value`` (called first when it is a zero-argument callable) in its own slot."""
    what = f"item {'.'.join(str(i + 1) for i in part.index) or 1} of layout()"
    try:
        if callable(value) and not isinstance(value, Component | BaseFigure):
            value = value()
        body = element(value, part)
    except Exception as exc:  # noqa: BLE001 - one failing part must not blank the others
        body = failure(exc, part, what)
    return html.Div(
        body,
        id=f"{part.page_name}-part-{part.key.replace('.', '-')}",
        className="portal-part",
    )


def render(result: Any, part: Part) -> Any:
    """The whole page body from what ``layout`` returned."""
    if isinstance(result, list | tuple):
        return html.Div(element(result, part), className="portal-parts")
    return evaluate(result, part)


# -- zoom of resampled figures ----------------------------------------------------------------
def find(result: Any, index: tuple[int, ...]) -> Any:
    """The element at ``index`` in a fresh ``layout`` result (callables called on the way)."""
    value = result
    for i in index:
        if callable(value) and not isinstance(value, Component | BaseFigure):
            value = value()
        value = value[i]
    if callable(value) and not isinstance(value, Component | BaseFigure):
        value = value()
    return value


def zoom(
    relayout: dict[str, Any] | None,
    graph_id: dict[str, str],
    search: str | None,
    call: Callable[[str, str | None], Any],
) -> Any:
    """Re-aggregate a resampled graph for the range the browser zoomed to.

    Stateless across gunicorn workers: nothing is kept per user. The request carries the page,
    the part and the URL; whichever worker answers calls the page's ``layout`` again with that
    URL (the data source, e.g. a cached array, rebuilds the same FigureResampler) and asks
    plotly-resampler for the visible slice.
    """
    if not relayout:
        return dash.no_update
    result = find(call(graph_id["page"], search), ())
    listed = isinstance(result, list | tuple)
    fig = find(result, tuple(int(i) for i in graph_id["part"].split(".")) if listed else ())
    if not is_resampled(fig):
        return dash.no_update
    return fig.construct_update_data_patch(relayout)
