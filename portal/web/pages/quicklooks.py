"""Quicklooks: every plugin page, with its file and load state (broken ones say why)."""

from __future__ import annotations

from pathlib import Path
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
    listed = [p for p in dash.page_registry.values() if p.get("section") == "quicklooks"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for p in listed:
        by_name.setdefault(Path(p.get("file", "")).name, []).append(p)
    clashes = {name: same for name, same in by_name.items() if len(same) > 1}
    rows = [
        {
            "quicklook": p["name"],
            "path": p["path"],
            "file": p.get("file", ""),
            "state": "error: " + p["error"] if p.get("error") else "ok",
            "same name as": ", ".join(
                f"{o.get('file', '')} ({o['path']})"
                for o in clashes.get(Path(p.get("file", "")).name, [])
                if o is not p
            ),
        }
        for p in listed
    ]
    df = pd.DataFrame(rows)
    if not clashes:
        df = df.drop(columns="same name as", errors="ignore")
    notices = [
        ql.notice(
            f"{len(same)} quicklook files are named {name}: "
            + "; ".join(f"{o.get('file', '')} at {o['path']}" for o in same)
            + ". Rename one to give it a clearer address."
        )
        for name, same in sorted(clashes.items())
    ]
    return html.Div(
        [
            *notices,
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
