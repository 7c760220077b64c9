"""Quicklooks: every plugin page, with its file and load state (broken ones say why)."""

from __future__ import annotations

from typing import Any

import dash
import pandas as pd
from dash import html

from portal import quicklook as ql
from portal.web import ui

TITLE = "Quicklooks"
PATH = "/quicklooks"
ORDER = 50


def layout(time_range: ql.TimeRange, **params: Any) -> html.Div:
    rows = [
        {
            "quicklook": p["name"],
            "path": p["path"],
            "file": p.get("file", ""),
            "state": "error: " + p["error"] if p.get("error") else "ok",
        }
        for p in dash.page_registry.values()
        if p.get("section") == "quicklooks"
    ]
    df = pd.DataFrame(rows)
    return html.Div(
        [
            html.P(
                "Drop a .py file into quicklooks/ or a PORTAL_QUICKLOOKS_PATH folder; it appears "
                "here within seconds. Start one with: portal quicklook new NAME"
            ),
            ui.table(
                df,
                "quicklooks-table",
                links={"path": lambda p: f"{p}?{time_range.query()}"},
                empty="no quicklooks yet",
            ),
        ]
    )
