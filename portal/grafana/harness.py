"""Every panel target of every provisioned dashboard, run against the real backends.

PromQL goes through Prometheus's ``query_range`` (``portal.metrics.client``), SQL through
PostgreSQL after ``macros`` expands it the way Grafana does, with the ``timescaledb`` flag the
datasource gets for that database (``provisioning.timescaledb_for``). A target passes when it
parses and returns at least one series or row. LogQL targets are reported as skipped: no Loki
runs here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from portal.db.engine import connect_raw
from portal.errors import PortalError
from portal.grafana import macros, provisioning
from portal.grafana.macros import Variable
from portal.metrics.client import Prometheus
from portal.settings import Settings

KINDS = {"prometheus": "promql", "grafana-postgresql-datasource": "sql", "loki": "logql"}
MAX_POINTS = 1000  # Grafana's data points for a full-width panel of ~1000 px


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: str
    ref_id: str
    kind: str  # promql | sql | logql | variable
    query: str
    max_points: int = MAX_POINTS
    time_from: float | None = None  # the panel's relative time override, in seconds
    #: the query's (or panel's) minimum interval, in seconds: Grafana's "Min step"
    min_interval: float | None = None


@dataclass
class Result:
    target: Target
    expanded: str = ""
    seconds: float = 0.0
    #: PromQL only: Prometheus's own evaluation time (the rest is transfer and decoding)
    server_seconds: float | None = None
    rows: int = 0
    error: str = ""
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.skipped) or (not self.error and self.rows > 0)

    def line(self) -> str:
        t = self.target
        where = f"{t.dashboard} / {t.panel} [{t.ref_id}] {t.kind}"
        if self.skipped:
            return f"    skipped  {where}: {self.skipped}"
        status = "ok" if self.ok else f"FAILED: {self.error or 'no series or rows returned'}"
        return f"{self.seconds * 1000:9.1f} ms {self.rows:7} rows  {where}  {status}"


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    @property
    def ran(self) -> list[Result]:
        return [r for r in self.results if not r.skipped]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def median_ms(self) -> float:
        return statistics.median(r.seconds for r in self.ran) * 1000 if self.ran else 0.0

    def slowest(self) -> Result | None:
        return max(self.ran, key=lambda r: r.seconds, default=None)

    def summary(self) -> str:
        bad = [r for r in self.results if not r.ok]
        slow = self.slowest()
        slow_txt = f"{slow.seconds * 1000:.1f} ms ({slow.target.panel})" if slow else "-"
        return (
            f"{len(self.ran)} queries run, {len(bad)} failed, "
            f"{len(self.results) - len(self.ran)} skipped; median {self.median_ms():.1f} ms, "
            f"slowest {slow_txt}"
        )


def _walk(panels: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _walk(p.get("panels", []))


def extract(dashboards: dict[str, dict[str, Any]]) -> list[Target]:
    """Every target of every panel (rows included), tagged with its query language."""
    out = []
    for name, model in dashboards.items():
        for panel in _walk(model.get("panels", [])):
            for tgt in panel.get("targets", []):
                ds = tgt.get("datasource") or panel.get("datasource") or {}
                kind = KINDS.get(ds.get("type", ""), ds.get("type", "unknown"))
                query = tgt.get("rawSql") if kind == "sql" else tgt.get("expr")
                out.append(
                    Target(
                        name,
                        panel.get("title", "?"),
                        tgt.get("refId", "?"),
                        kind,
                        query or "",
                        int(panel.get("maxDataPoints") or MAX_POINTS),
                        macros.parse_duration(panel["timeFrom"]) if panel.get("timeFrom") else None,
                        _min_interval(tgt.get("interval") or panel.get("interval")),
                    )
                )
    return out


def _min_interval(raw: str | None) -> float | None:
    """A target's ``interval`` ("5m"; Grafana also allows ">5m", the same minimum here)."""
    return macros.parse_duration(raw.lstrip(">")) if raw else None


def grafana_globals(
    range_s: float, max_points: int, min_interval_s: float
) -> tuple[float, dict[str, str]]:
    """Grafana's global variables; a query's minimum interval, when set, stands for the scrape
    interval in ``$__interval`` and ``$__rate_interval`` alike (as in Grafana)."""
    step = macros.interval(range_s, max_points, min_interval_s)
    rate = macros.rate_interval(step, min_interval_s)
    fmt = macros.format_duration
    return step, {
        "__interval": fmt(step),
        "__interval_ms": str(int(step * 1000)),
        "__rate_interval": fmt(rate),
        "__range": f"{int(range_s)}s",
        "__range_s": str(int(range_s)),
        "__range_ms": str(int(range_s * 1000)),
        "__auto": fmt(step),
    }


class Runner:
    """Runs targets of one time range; holds the backend connections."""

    def __init__(
        self, prom: Prometheus, database_url: str, start: datetime, end: datetime, scrape_s: float
    ) -> None:
        self.prom, self.start, self.end, self.scrape_s = prom, start, end, scrape_s
        self.range_s = (end - start).total_seconds()
        self.conn = connect_raw(database_url)
        self.conn.execute("SET default_transaction_read_only = on")
        self.conn.execute("SET statement_timeout = '60s'")
        #: as in the datasource ``portal grafana export`` writes for this database
        self.timescaledb = provisioning.timescaledb_for(database_url)

    def close(self) -> None:
        self.conn.close()

    def window(self, target: Target) -> tuple[datetime, float]:
        """Start and length of the target's time range (a panel's ``timeFrom`` wins)."""
        if target.time_from:
            return self.end - timedelta(seconds=target.time_from), target.time_from
        return self.start, self.range_s

    def run(self, target: Target, variables: dict[str, Variable]) -> Result:
        res = Result(target)
        try:
            if target.kind == "promql":
                self._promql(res, variables)
            elif target.kind == "sql":
                self._sql(res, variables)
            elif target.kind == "logql":
                res.skipped = "LogQL: no Loki server in this environment"
            else:
                res.error = f"unsupported datasource type {target.kind!r}"
        except PortalError as exc:
            res.error = str(exc)
        except psycopg.Error as exc:
            self.conn.rollback()
            res.error = str(exc).strip().splitlines()[0]
        return res

    def _promql(self, res: Result, variables: dict[str, Variable]) -> None:
        start, range_s = self.window(res.target)
        step, g = grafana_globals(
            range_s, res.target.max_points, res.target.min_interval or self.scrape_s
        )
        query = macros.substitute_variables(res.target.query, variables, "promql")
        res.expanded = macros.substitute_globals(query, g)
        t0 = time.perf_counter()
        data, res.server_seconds = self.prom.query_range_timed(
            res.expanded, start, self.end, macros.format_duration(step)
        )
        res.seconds = time.perf_counter() - t0
        res.rows = sum(1 for s in data if s.get("values"))

    def _sql(self, res: Result, variables: dict[str, Variable]) -> None:
        start, range_s = self.window(res.target)
        # the panel's minimum interval, else the datasource's (``timeInterval`` 1m)
        _, g = grafana_globals(range_s, res.target.max_points, res.target.min_interval or 60.0)
        query = macros.substitute_variables(res.target.query, variables, "sql")
        query = macros.substitute_globals(query, g)
        res.expanded = macros.expand_sql_macros(query, start, self.end, self.timescaledb)
        t0 = time.perf_counter()
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(res.expanded.encode())
            res.rows = len(cur.fetchall())
        res.seconds = time.perf_counter() - t0

    def resolve(self, dashboard: str, model: dict[str, Any]) -> tuple[dict, list[Result]]:
        """Values of the dashboard's template variables (All, or the first value)."""
        variables: dict[str, Variable] = {}
        results = []
        for var in model.get("templating", {}).get("list", []):
            name, kind = var["name"], var.get("type")
            res = Result(Target(dashboard, f"${name}", "var", "variable", str(var.get("query"))))
            values: list[str] = []
            try:
                t0 = time.perf_counter()
                values = self._values(var, variables)
                res.seconds = time.perf_counter() - t0
            except PortalError as exc:
                res.error = str(exc)
            except psycopg.Error as exc:
                self.conn.rollback()
                res.error = str(exc).strip().splitlines()[0]
            res.rows = len(values)
            if kind == "textbox":
                res.rows, res.skipped = 1, "text box (free text, default used)"
            elif (var.get("datasource") or {}).get("type") == "loki":
                res.skipped = "LogQL: no Loki server in this environment"
            results.append(res)
            multi = bool(var.get("multi") or var.get("includeAll"))
            all_value = var.get("allValue") if var.get("includeAll") else None
            variables[name] = Variable(name, tuple(values if multi else values[:1]), multi)
            if all_value:
                variables[name] = Variable(name, tuple(values), multi, all_value)
        return variables, results

    def _values(self, var: dict[str, Any], known: dict[str, Variable]) -> list[str]:
        kind, query = var.get("type"), str(var.get("query") or "")
        if kind == "custom":
            return [v.strip() for v in query.split(",") if v.strip()]
        if kind == "textbox":
            return [query]
        ds = (var.get("datasource") or {}).get("type")
        if ds == "prometheus":
            return self._label_values(macros.substitute_variables(query, known, "promql"))
        if ds == "grafana-postgresql-datasource":
            sql = macros.substitute_variables(query, known, "sql")
            sql = macros.expand_sql_macros(sql, self.start, self.end, self.timescaledb)
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(sql.encode())
                return [str(r[0]) for r in cur.fetchall()]
        return []

    def _label_values(self, query: str) -> list[str]:
        """Grafana's ``label_values(metric, label)`` over the dashboard's time range."""
        inner = query.strip()
        if not (inner.startswith("label_values(") and inner.endswith(")")):
            raise PortalError(f"unsupported Prometheus variable query {query!r}")
        metric, _, label = inner[len("label_values(") : -1].rpartition(",")
        label = label.strip()
        promql = f"count by ({label}) (count_over_time({metric.strip()}[{int(self.range_s)}s]))"
        return sorted({s["metric"].get(label, "") for s in self.prom.query(promql)} - {""})


def run_dashboards(
    dashboards: dict[str, dict[str, Any]],
    prom: Prometheus,
    database_url: str,
    start: datetime,
    end: datetime,
    scrape_s: float | None = None,
) -> Report:
    """Resolve each dashboard's variables, then run each of its targets once."""
    scrape_s = scrape_s or _scrape_interval()
    runner = Runner(prom, database_url, start, end, scrape_s)
    report = Report()
    targets = extract(dashboards)
    try:
        for name, model in dashboards.items():
            variables, var_results = runner.resolve(name, model)
            report.results.extend(var_results)
            report.results.extend(runner.run(t, variables) for t in targets if t.dashboard == name)
    finally:
        runner.close()
    return report


def _scrape_interval() -> float:
    """The Prometheus datasource's ``timeInterval`` (what ``$__rate_interval`` builds on)."""
    for ds in provisioning.datasources()["datasources"]:
        if ds["type"] == "prometheus":
            return macros.parse_duration(ds["jsonData"]["timeInterval"])
    return 15.0


def default_range_s(model: dict[str, Any]) -> float:
    """The dashboard's own time range (``now-6h`` .. ``now``) in seconds."""
    return macros.parse_duration(
        str(model.get("time", {}).get("from", "now-6h")).removeprefix("now-")
    )


def run(cfg: Settings, range_s: float, only: Sequence[str] = ()) -> Report:
    """Every registered dashboard against the configured backends, over the last ``range_s``."""
    dashboards = provisioning.registered(cfg)
    if only:
        unknown = sorted(set(only) - set(dashboards))
        if unknown:
            raise PortalError(
                f"no dashboard {', '.join(unknown)} (have: {', '.join(sorted(dashboards))})"
            )
        dashboards = {k: v for k, v in dashboards.items() if k in only}
    end = datetime.now(UTC)
    return run_dashboards(
        dashboards,
        Prometheus(cfg.prometheus_url),
        cfg.database_url,
        end - timedelta(seconds=range_s),
        end,
    )
