"""Thin helpers over grafana-foundation-sdk shared by every dashboard source.

The SDK has builders for Prometheus and Loki queries but none for Grafana's PostgreSQL data
source, so ``Sql`` adds one (a raw-SQL target in the shape Grafana's own editor saves).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import loki, prometheus
from grafana_foundation_sdk.cog import builder, variants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from portal.grafana import uids

#: The fixed datasource uids of ``uids`` as SDK references.
PROMETHEUS, POSTGRES, LOKI, ALERTMANAGER = (
    DataSourceRef(type_val=ref.type_val, uid=ref.uid)
    for ref in (uids.PROMETHEUS, uids.POSTGRES, uids.LOKI, uids.ALERTMANAGER)
)

SqlFormat = Literal["time_series", "table"]


class SqlQuery(variants.Dataquery):
    """A raw-SQL target of the PostgreSQL data source."""

    def __init__(self, sql: str, fmt: SqlFormat, ref_id: str) -> None:
        self.sql, self.fmt, self.ref_id = sql, fmt, ref_id

    def to_json(self) -> dict[str, Any]:
        return {
            "datasource": {"type": POSTGRES.type_val, "uid": POSTGRES.uid},
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.sql,
            "refId": self.ref_id,
        }


class Sql(builder.Builder[variants.Dataquery]):
    """Builder for ``SqlQuery`` so it slots into ``Panel.with_target``."""

    def __init__(self, sql: str, fmt: SqlFormat = "time_series", ref_id: str = "A") -> None:
        self._query = SqlQuery(" ".join(sql.split()), fmt, ref_id)

    def build(self) -> SqlQuery:
        return self._query


def prom(expr: str, legend: str = "", ref_id: str = "A") -> prometheus.Dataquery:
    """A range PromQL target on the fixed Prometheus datasource."""
    q = prometheus.Dataquery().expr(" ".join(expr.split())).ref_id(ref_id).range()
    q = q.datasource(PROMETHEUS)
    return q.legend_format(legend) if legend else q


def logql(expr: str, legend: str = "", ref_id: str = "A") -> loki.Dataquery:
    q = loki.Dataquery().expr(expr).ref_id(ref_id).datasource(LOKI)
    return q.legend_format(legend) if legend else q


def prom_variable(name: str, label: str, metric: str, multi: bool = False) -> gd.QueryVariable:
    """A variable listing the values of ``label`` on ``metric`` (Grafana's ``label_values``)."""
    v = (
        gd.QueryVariable(name)
        .label(name.capitalize())
        .datasource(PROMETHEUS)
        .query(f"label_values({metric}, {label})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    # "All" as one regex instead of the full list: 1,024 beams make a costly alternation
    return v.multi(True).include_all(True).all_value(".*").current(_all()) if multi else v


def sql_variable(name: str, sql: str, multi: bool = False) -> gd.QueryVariable:
    v = (
        gd.QueryVariable(name)
        .label(name.capitalize())
        .datasource(POSTGRES)
        .query(sql)
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    return v.multi(True).include_all(True).current(_all()) if multi else v


def _all() -> VariableOption:
    return VariableOption(selected=True, text="All", value="$__all")


def render(dash: gd.Dashboard) -> dict[str, Any]:
    """The dashboard as provisioning JSON: panel ids numbered, empty ``options`` dropped."""
    model: dict[str, Any] = json.loads(json.dumps(dash.build(), cls=JSONEncoder))
    next_id = 1
    for panel in _walk(model.get("panels", [])):
        panel["id"] = next_id
        next_id += 1
        if panel.get("options") is None:
            panel.pop("options", None)
    for var in model.get("templating", {}).get("list", []):
        var.pop("id", None)  # the SDK writes a zero UUID; Grafana assigns its own
    model["id"] = None
    return model


def _walk(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_walk(p.get("panels", [])))
    return out


def dashboard(uid: str, title: str, description: str) -> gd.Dashboard:
    """Common settings: fixed uid, tags, last 6 hours, 30 s refresh, UTC."""
    return (
        gd.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["obsportal"])
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("utc")
        .readonly()
    )


Target = builder.Builder[variants.Dataquery]


def _datasource(targets: tuple[Target, ...]) -> DataSourceRef:
    first = targets[0]
    if isinstance(first, Sql):
        return POSTGRES
    if isinstance(first, loki.Dataquery):
        return LOKI
    return PROMETHEUS


def _with_targets(panel: Any, title: str, targets: tuple[Target, ...], span: int) -> Any:
    panel = panel.title(title).datasource(_datasource(targets)).span(span).height(8)
    for i, target in enumerate(targets):
        ref = chr(ord("A") + i)
        query = target.build()
        if isinstance(query, SqlQuery):
            query.ref_id = ref
        else:
            target.ref_id(ref)  # type: ignore[attr-defined]
        panel = panel.with_target(target)
    return panel


def timeseries(title: str, unit: str, *targets: Target, span: int = 12) -> Any:
    """A time-series panel (the non-Angular successor of the graph panel)."""
    from grafana_foundation_sdk.builders import timeseries as ts

    return _with_targets(ts.Panel().unit(unit), title, targets, span)


def stat(title: str, unit: str, *targets: Target, span: int = 6) -> Any:
    from grafana_foundation_sdk.builders import stat as st

    return _with_targets(st.Panel().unit(unit).height(4), title, targets, span).height(4)


def table(title: str, *targets: Target, span: int = 12) -> Any:
    from grafana_foundation_sdk.builders import table as tb

    return _with_targets(tb.Panel(), title, targets, span)


def state_timeline(title: str, *targets: Target, span: int = 12) -> Any:
    from grafana_foundation_sdk.builders import statetimeline as stl

    return _with_targets(stl.Panel(), title, targets, span)


def logs(title: str, *targets: Target, span: int = 24) -> Any:
    from grafana_foundation_sdk.builders import logs as lg

    return _with_targets(lg.Panel(), title, targets, span).height(12)
