"""Grafana's query-time substitutions, reproduced so the harness runs what Grafana would run.

Order as in Grafana: template variables (frontend), then ``$__interval``-style globals, then the
PostgreSQL data source's ``$__macro(args)`` functions (backend, ``grafana-postgresql-datasource``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from portal.errors import PortalError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
#: Grafana's interval rounding table: (upper bound in seconds, rounded interval in seconds).
_ROUND = [
    (0.015, 0.01), (0.035, 0.02), (0.075, 0.05), (0.15, 0.1), (0.35, 0.2), (0.75, 0.5),
    (1.5, 1), (3.5, 2), (7.5, 5), (12.5, 10), (17.5, 15), (25, 20), (45, 30), (90, 60),
    (210, 120), (450, 300), (750, 600), (1050, 900), (1500, 1200), (2700, 1800), (5400, 3600),
    (9000, 7200), (16200, 10800), (24300, 21600), (64800, 43200), (129600, 86400),
    (864000, 604800), (3153600, 2592000),
]  # fmt: skip
_MACRO = re.compile(r"\$(__\w+)\(([^)]*)\)")
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")


def parse_duration(text: str) -> float:
    """``'5m'`` -> 300.0 (Grafana interval syntax: ms, s, m, h, d, w, y)."""
    m = re.fullmatch(r"\s*'?(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)'?\s*", text)
    if not m:
        raise PortalError(f"{text!r} is not a duration like 30s, 5m, 6h or 30d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    """Largest whole unit: 60 -> ``1m``, 90 -> ``90s``, 0.5 -> ``500ms``."""
    for unit in ("y", "w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def interval(range_s: float, max_points: int = 1000, min_interval_s: float = 0.0) -> float:
    """``$__interval`` for a panel: range / data points, rounded, at least the minimum."""
    raw = range_s / max(1, max_points)
    rounded = next((r for bound, r in _ROUND if raw <= bound), 31536000)
    return max(rounded, min_interval_s)


def rate_interval(interval_s: float, scrape_s: float) -> float:
    """``$__rate_interval``: max(interval + scrape interval, 4 x scrape interval)."""
    return max(interval_s + scrape_s, 4 * scrape_s)


@dataclass(frozen=True)
class Variable:
    """A resolved template variable: the selected values and how Grafana formats them."""

    name: str
    values: tuple[str, ...]
    multi: bool = False  # multi-value or include-All: values are formatted as a list
    all_value: str | None = None  # custom "All" value (used verbatim when All is selected)


def _sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _regex_escape(value: str) -> str:
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\1", value)


def format_variable(var: Variable, dialect: str) -> str:
    """The variable's text in a query of ``dialect`` (``sql``, ``promql`` or ``logql``)."""
    if var.all_value is not None:
        return var.all_value
    if dialect == "sql":
        if not var.multi:
            return var.values[0] if var.values else ""
        return ",".join(_sql_quote(v) for v in var.values) or "''"
    if not var.multi:
        return (var.values[0] if var.values else "").replace("\\", "\\\\").replace("'", "\\'")
    escaped = [_regex_escape(v) for v in var.values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute_variables(query: str, variables: Mapping[str, Variable], dialect: str) -> str:
    """Replace ``$name``, ``${name}`` and ``[[name]]`` of known variables; others stay."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        var = variables.get(name)
        return format_variable(var, dialect) if var is not None else m.group(0)

    return _VAR.sub(repl, query)


def substitute_globals(query: str, g: Mapping[str, str]) -> str:
    """``$__interval``, ``$__rate_interval``, ``$__range`` ... longest names first."""
    for name in sorted(g, key=len, reverse=True):
        query = query.replace(f"${{{name}}}", g[name]).replace(f"${name}", g[name])
    return query


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def _args(raw: str) -> list[str]:
    return [a.strip() for a in raw.split(",")] if raw.strip() else []


def _group(args: Sequence[str], timescaledb: bool, macro: str) -> str:
    if len(args) < 2:
        raise PortalError(f"macro ${macro} needs a column and an interval")
    secs = parse_duration(args[1])
    step = int(secs) if float(secs).is_integer() else secs
    if timescaledb:
        return f"time_bucket('{step}s',{args[0]})"
    return f"floor(extract(epoch from {args[0]})/{step})*{step}"


def expand_sql_macros(sql: str, start: datetime, end: datetime, timescaledb: bool) -> str:
    """The PostgreSQL data source's macros, as ``grafana-postgresql-datasource`` writes them."""

    def repl(m: re.Match[str]) -> str:
        name, args = m.group(1), _args(m.group(2))
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{_iso(start)}' AND '{_iso(end)}'"
        if name == "__timeFrom":
            return f"'{_iso(start)}'"
        if name == "__timeTo":
            return f"'{_iso(end)}'"
        if name == "__timeGroup":
            return _group(args, timescaledb, name)
        if name == "__timeGroupAlias":
            return _group(args, timescaledb, name) + ' AS "time"'
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
        if name == "__unixEpochFrom":
            return str(int(start.timestamp()))
        if name == "__unixEpochTo":
            return str(int(end.timestamp()))
        if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
            secs = int(parse_duration(args[1]))
            alias = ' AS "time"' if name.endswith("Alias") else ""
            return f"floor(({args[0]})/{secs})*{secs}{alias}"
        raise PortalError(f"unknown Grafana macro ${name}")

    return _MACRO.sub(repl, sql)
