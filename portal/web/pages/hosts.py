"""Hosts: state, CPU, memory, disk and components of every host, linking to each host's page."""

from __future__ import annotations

from typing import Any

import pandas as pd
from dash import html

from portal import quicklook as ql
from portal import routes
from portal.inventory import liveness
from portal.web import ui

TITLE = "Hosts"
ORDER = 20

LIVE = {
    "cpu": 'avg by (host) (obs_host_cpu_usage_ratio{cpu="total"})',
    "memory": "sum by (host) (obs_host_memory_used_bytes) / sum by (host) "
    "(obs_host_memory_total_bytes)",
    "disk": "max by (host) (obs_host_filesystem_used_bytes / obs_host_filesystem_size_bytes)",
}


def inventory() -> pd.DataFrame:
    """Hosts with their components, from the database."""
    return ql.sql(
        "SELECT h.name AS host, h.role, h.state AS declared, "
        "coalesce(string_agg(c.name, ', ' ORDER BY c.name), '') AS components "
        "FROM hosts h LEFT JOIN components c ON c.host = h.name "
        "GROUP BY h.name, h.role, h.state ORDER BY h.name"
    )


def states() -> tuple[dict[str, str], ql.PortalError | None]:
    """Each host's state (portal/inventory/liveness.py) and why Prometheus was not its source."""
    found = liveness.host_states(routes.settings())
    return {h.name: h.state for h in found.hosts}, found.problem


def live() -> pd.DataFrame:
    """Latest CPU / memory / disk use per host, from Prometheus."""
    frames = []
    for column, query in LIVE.items():
        df = ql.promql(query)
        if not df.empty and "host" in df:
            frames.append(df.set_index("host")["value"].rename(column))
    if not frames:
        return pd.DataFrame(columns=list(LIVE))
    return pd.concat(frames, axis=1)


def layout(time_range: ql.TimeRange, **params: Any) -> html.Div:
    try:
        hosts = inventory()
    except ql.PortalError as err:
        return html.Div([ql.unavailable(err)])
    parts: list[Any] = []
    try:
        state, problem = states()
    except ql.PortalError as err:
        state, problem = {}, err
    if problem is not None:
        parts.append(ql.unavailable(problem))
        parts.append(html.P("States from each host's newest stored sample.", id="hosts-source"))
    hosts["state"] = [state.get(h, "unknown") for h in hosts["host"]]
    usage = pd.DataFrame(columns=list(LIVE))
    if problem is None:
        try:
            usage = live()
        except ql.PortalError as err:
            parts.append(ql.unavailable(err))
    df = hosts.join(usage, on="host")
    for column in LIVE:
        df[column] = df.get(column, pd.Series(dtype=float)).map(
            lambda v: "–" if pd.isna(v) else f"{v:.0%}"
        )
    df = df[["host", "role", "state", "declared", "cpu", "memory", "disk", "components"]]
    suffix = "?" + time_range.query()
    parts.append(
        ui.table(
            df,
            "hosts-table",
            links={"host": lambda h: f"/hosts/{h}{suffix}"},
            empty="no hosts registered yet (portal hosts add, or portal demo seed)",
        )
    )
    return html.Div(parts)
