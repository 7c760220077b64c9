"""Grafana's query substitutions as the harness reproduces them (pure string level)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from portal.errors import PortalError
from portal.grafana import macros
from portal.grafana.macros import Variable

START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
END = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def test_time_filter_and_group_match_grafana_postgres() -> None:
    sql = "SELECT $__timeGroupAlias(time, '5m'), v FROM t WHERE $__timeFilter(time)"
    out = macros.expand_sql_macros(sql, START, END, timescaledb=False)
    assert out == (
        'SELECT floor(extract(epoch from time)/300)*300 AS "time", v FROM t '
        "WHERE time BETWEEN '2026-12-01T00:00:00Z' AND '2026-12-01T06:00:00Z'"
    )


def test_timescaledb_flag_uses_time_bucket() -> None:
    out = macros.expand_sql_macros("$__timeGroup(ts, 1h)", START, END, timescaledb=True)
    assert out == "time_bucket('3600s',ts)"


def test_epoch_macros() -> None:
    out = macros.expand_sql_macros(
        "$__unixEpochFilter(e) $__unixEpochFrom() $__unixEpochGroupAlias(e, 1m)", START, END, False
    )
    assert out == (
        f"e >= {int(START.timestamp())} AND e <= {int(END.timestamp())} "
        f'{int(START.timestamp())} floor((e)/60)*60 AS "time"'
    )


def test_unknown_macro_is_a_clear_error() -> None:
    with pytest.raises(PortalError, match=r"unknown Grafana macro \$__nope"):
        macros.expand_sql_macros("$__nope(x)", START, END, False)


def test_interval_rounding_and_rate_interval() -> None:
    assert macros.interval(6 * 3600) == 20  # 21.6 s -> 20 s, as Grafana rounds
    assert macros.interval(30 * 86400) == 1800
    assert macros.interval(60, min_interval_s=60) == 60
    assert macros.rate_interval(20, 10) == 40
    assert macros.rate_interval(1800, 10) == 1810
    assert macros.format_duration(1810) == "1810s"
    assert macros.format_duration(3600) == "1h"
    assert macros.parse_duration("'1m'") == 60


def test_variables_are_formatted_per_query_language() -> None:
    multi = Variable("host", ("cn01", "o'hara"), multi=True)
    single = Variable("beam", ("3",))
    everything = Variable("h", ("a", "b"), multi=True, all_value=".+")
    v = {"host": multi, "beam": single, "h": everything}
    assert (
        macros.substitute_variables("host IN ($host) AND beam = $beam", v, "sql")
        == "host IN ('cn01','o''hara') AND beam = 3"
    )
    assert macros.substitute_variables('x{host=~"$host",b="${beam}"}', v, "promql") == (
        'x{host=~"(cn01|o\'hara)",b="3"}'
    )
    assert macros.substitute_variables('{h=~"[[h]]"} $other', v, "logql") == '{h=~".+"} $other'
    g = {"__interval": "20s", "__interval_ms": "20000"}
    assert macros.substitute_globals("$__interval_ms $__interval", g) == "20000 20s"


def test_a_query_min_interval_sets_its_step_and_rate_interval_as_in_grafana() -> None:
    """The real-time panels read 5-minute recorded series: their targets say ``interval: 5m``,
    so over 1 h a point is 5 min (not range / max points), and rate windows build on 5 min."""
    from portal.grafana import harness, provisioning

    targets = harness.extract({"realtime": provisioning.load_dashboards()["realtime"]})
    lag = next(t for t in targets if t.panel == "Lag behind real time")
    assert lag.min_interval == 300
    step, g = harness.grafana_globals(3600, lag.max_points, lag.min_interval or 15)
    assert step == 300 and g["__interval"] == "5m" and g["__rate_interval"] == "20m"
    plain = next(t for t in targets if t.panel == "DM adjustments per hour")
    assert plain.min_interval is None
    step, g = harness.grafana_globals(3600, plain.max_points, plain.min_interval or 15)
    assert step < 300 and g["__rate_interval"] == macros.format_duration(max(step + 15, 60))
