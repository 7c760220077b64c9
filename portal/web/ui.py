"""Small building blocks the built-in pages share: tiles, tables, number formatting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

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


def grafana_link(uid: str) -> str:
    """URL of a provisioned Grafana dashboard (uids are fixed in grafana-provisioning/)."""
    return f"{routes.settings().grafana_url}/d/{uid}"


def tile(title: str, value: Any, href: str, grafana_uid: str, tile_id: str) -> html.Div:
    """One overview number with links to its detail page and, when Grafana is configured and
    answers, its Grafana dashboard."""
    links: list[Any] = [dcc.Link("details", href=href)]
    base = grafana_base()
    if base is not None:
        links.append(html.A("Grafana", href=f"{base}/d/{grafana_uid}", target="_blank"))
    return html.Div(
        [
            html.Div(title, className="portal-tile-title"),
            html.Div(value, className="portal-tile-value", id=tile_id),
            html.Div(links, className="portal-tile-links"),
        ],
        className="portal-tile",
    )


def human_bytes(n: float | None, per_second: bool = False) -> str:
    if n is None or pd.isna(n):
        return "–"
    unit = "B/s" if per_second else "B"
    for prefix in ("", "k", "M", "G", "T", "P"):
        if abs(n) < 1000:
            return f"{n:.1f} {prefix}{unit}"
        n /= 1000
    return f"{n:.1f} E{unit}"


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
