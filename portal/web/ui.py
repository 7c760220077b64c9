"""Small building blocks the built-in pages share: tiles, tables, number formatting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pandas as pd
from dash import dcc, html

from portal import routes
from portal.readiness import http_ready

GRAFANA_CHECK_S = 60.0  # how long an answer about Grafana's health is reused
_grafana_checked: dict[str, tuple[float, bool]] = {}  # url -> (monotonic time, ready)
_grafana_lock = threading.Lock()


def grafana_ready(url: str) -> bool:
    """True when Grafana at ``url`` answers ``/api/health``; asked at most once a minute."""
    with _grafana_lock:
        checked = _grafana_checked.get(url)
        if checked is not None and time.monotonic() - checked[0] < GRAFANA_CHECK_S:
            return checked[1]
    ready = http_ready(url, "/api/health", timeout=1.0)
    with _grafana_lock:
        _grafana_checked[url] = (time.monotonic(), ready)
    return ready


def grafana_base() -> str | None:
    """``PORTAL_GRAFANA_URL`` when it is set and Grafana answers, else None (no links)."""
    url = routes.settings().grafana_url
    return url if url and grafana_ready(url) else None


def grafana_link(uid: str, **variables: str) -> html.A | None:
    """A link to a provisioned Grafana dashboard (fixed uids), or None without a Grafana."""
    base = grafana_base()
    if base is None:
        return None
    query = "?" + urlencode({f"var-{k}": v for k, v in variables.items()}) if variables else ""
    return html.A("Grafana", href=f"{base}/d/{uid}{query}", target="_blank")


def tile(title: str, value: Any, href: str, grafana_uid: str, tile_id: str) -> html.Div:
    """One overview number with links to its detail page and, when Grafana is configured and
    answers, its Grafana dashboard."""
    links: list[Any] = [dcc.Link("details", href=href)]
    grafana = grafana_link(grafana_uid)
    if grafana is not None:
        links.append(grafana)
    return html.Div(
        [
            html.Div(title, className="portal-tile-title"),
            html.Div(value, className="portal-tile-value", id=tile_id),
            html.Div(links, className="portal-tile-links"),
        ],
        className="portal-tile",
    )


BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def binary_unit(n: float) -> tuple[float, str]:
    """The binary unit (divisor, name) that shows ``n`` bytes as 1 to 1023.9: KiB, MiB, ..."""
    i = 0
    while i < len(BINARY_UNITS) - 1 and abs(n) >= 1024 ** (i + 1):
        i += 1
    return float(1024**i), BINARY_UNITS[i]


def human_bytes(n: float | None, per_second: bool = False) -> str:
    """``n`` bytes in binary units (KiB = 1024 B, MiB, GiB, ...), e.g. ``1.5 GiB/s``."""
    if n is None or pd.isna(n):
        return "–"
    divisor, unit = binary_unit(float(n))
    return f"{n / divisor:.1f} {unit}{'/s' if per_second else ''}"


def bytes_axis(values: pd.Series, per_second: bool = False) -> tuple[float, dict[str, Any]]:
    """For a graph of bytes: the divisor to apply to ``values`` and the y-axis settings.

    Plotly's own number format would print 3e9 bytes as "3B" (B for billion); the axis shows
    binary units instead: divide the values by the divisor and the ticks read "2.8 GiB".
    """
    finite = pd.to_numeric(values, errors="coerce").abs().dropna()
    divisor, unit = binary_unit(float(finite.max()) if not finite.empty else 0.0)
    unit += "/s" if per_second else ""
    return divisor, {"ticksuffix": f" {unit}", "tickformat": ",.4~r", "hoverformat": ",.2f"}


def with_gaps(df: pd.DataFrame, step: float, by: list[str] | None = None) -> pd.DataFrame:
    """Rows of ``time``/``value`` with a blank row wherever more than a step is missing.

    Plotly draws a line straight across missing samples; with a ``None`` in each hole and
    ``connectgaps=False`` a collector outage shows as the gap it is.
    """
    if df.empty:
        return df
    parts = []
    groups = df.groupby(by, sort=False) if by else [((), df)]
    for _, part in groups:
        part = part.sort_values("time")
        holes = part["time"].diff() > pd.Timedelta(seconds=1.5 * step)
        if holes.any():
            blanks = part[holes].copy()
            blanks["time"] = blanks["time"] - pd.Timedelta(seconds=step)
            blanks["value"] = None
            part = pd.concat([part, blanks]).sort_values("time", kind="stable")
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def table(
    df: pd.DataFrame,
    table_id: str,
    links: dict[str, Callable[[Any], str]] | None = None,
    empty: str = "nothing to show",
    link_text: dict[str, str] | None = None,
) -> Any:
    """A plain HTML table; ``links`` maps a column to a function giving each cell's href.

    ``link_text`` gives a column's cells a fixed text (e.g. "logs" for a column of hrefs).
    """
    if df.empty:
        return html.P(empty, id=table_id, className="portal-empty")
    links = links or {}
    fixed = link_text or {}

    def cell(col: str, value: Any) -> Any:
        text = (
            "–"
            if value is None or (not isinstance(value, list | dict) and pd.isna(value))
            else value
        )
        if col not in links:
            return html.Td(str(text))
        return html.Td(dcc.Link(fixed.get(col, str(text)), href=links[col](value)))

    return html.Table(
        [
            html.Thead(html.Tr([html.Th(c) for c in df.columns])),
            html.Tbody(
                [html.Tr([cell(c, row[c]) for c in df.columns]) for _, row in df.iterrows()]
            ),
        ],
        className="portal-table",
        id=table_id,
    )
