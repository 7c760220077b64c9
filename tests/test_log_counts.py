"""Hourly log counts: kept by the log write path, equal to counting raw lines, read by panels."""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from portal.db import engine as db_engine
from portal.db import log_counts, migrate
from portal.db.timeseries import ensure_partitions
from portal.db.writer import WritePath
from portal.grafana import harness, provisioning
from portal.grafana.dashboards.logs import NO_SEARCH, WHOLE_HOUR_GROUPS
from portal.grafana.macros import Variable
from portal.logs.store import COLUMNS
from portal.metrics.client import Prometheus

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAYS = 32
HOSTS = ("cn01", "cn02", "st01")
COMPONENTS = ("beamformer", "pipeline", "rsync")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
WORDS = ("started", "beam lag", "disk full", "retrying transfer", "candidate found")
RAW_COUNTS = (
    "SELECT date_trunc('hour', time, 'UTC') AS bucket, host, component, level, count(*) AS lines "
    "FROM log_lines GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
)
ROLLUP = "SELECT bucket, host, component, level, lines FROM log_counts_hourly ORDER BY 1, 2, 3, 4"
NOWHERE = "http://127.0.0.1:9"  # Prometheus: the SQL panels never ask it


def _lines(n: int, source: str, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    return [
        (
            NOW - dt.timedelta(seconds=rng.uniform(0, DAYS * 86400)),
            rng.choice(HOSTS),
            rng.choice(COMPONENTS),
            rng.choice(LEVELS),
            f"{rng.choice(WORDS)} {i}",
            {},
            source,
            i,
        )
        for i in range(n)
    ]


def _write(url: str, spool: Path, name: str, batches: list[list[tuple]]) -> None:
    """Through the log write path (``portal.logs.store``): COPY, or on a replayed key the
    deduplicating INSERT ... ON CONFLICT DO NOTHING."""
    w = WritePath(url, "log_lines", COLUMNS, spool_dir=spool, name=name, durable=True)
    try:
        for rows in batches:
            w.write_many(rows)
        assert w.flush(60), w.last_error
    finally:
        w.close()


def _fetch(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(db_engine.libpq_dsn(url)) as conn:
        return conn.execute(sql.encode()).fetchall()


@pytest.fixture(scope="module")
def stored(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, set]]:
    """A database of this module's own with lines from two concurrent writers and a replay;
    yields its URL and the distinct lines stored."""
    url = f"{pg_server}/obsportal_logcounts_{uuid.uuid4().hex[:8]}"
    try:
        migrate.upgrade(url)
        spool = tmp_path_factory.mktemp("log-counts-spool")
        with db_engine.get_engine(url).begin() as conn:
            ensure_partitions(
                conn, "log_lines", (NOW - dt.timedelta(days=DAYS + 1)).date(), NOW.date()
            )
            for h in HOSTS:
                conn.execute(sa.text("INSERT INTO hosts (name) VALUES (:h)"), {"h": h})
        a, b = _lines(3000, "shipper-a", 1), _lines(3000, "shipper-b", 2)
        writers = [
            threading.Thread(
                target=_write, args=(url, spool, "a", [a[i : i + 500] for i in range(0, 3000, 500)])
            ),
            threading.Thread(
                target=_write, args=(url, spool, "b", [b[i : i + 500] for i in range(0, 3000, 500)])
            ),
        ]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        # a replay after a lost shipper state: 400 lines already stored, 50 new ones
        replay = a[1000:1400] + _lines(3050, "shipper-a", 1)[3000:]
        _write(url, spool, "replay", [replay])
        yield url, {tuple(r[:5]) + (r[6], r[7]) for r in a + b + replay}
    finally:
        db_engine.drop_database(url)


def test_rollup_equals_counting_raw_lines_after_batches_and_a_replay(
    stored: tuple[str, set],
) -> None:
    url, lines = stored
    rollup, raw = _fetch(url, ROLLUP), _fetch(url, RAW_COUNTS)
    assert rollup == raw
    assert sum(r[4] for r in rollup) == len(lines) == 6050  # the replayed 400 counted once
    hours = Counter(
        (t.replace(minute=0, second=0, microsecond=0), h, c, lv) for t, h, c, lv, *_ in lines
    )
    assert {r[:4]: r[4] for r in rollup} == hours


def _runner(url: str, start: dt.datetime, end: dt.datetime) -> harness.Runner:
    return harness.Runner(Prometheus(NOWHERE), url, start, end, 10.0)


def _panel(runner: harness.Runner, target: harness.Target, variables: dict) -> list[tuple]:
    """The panel's rows, as Grafana would get them (macros expanded by the harness)."""
    res = runner.run(target, variables)
    assert not res.error, res.expanded + "\n" + res.error
    with runner.conn.transaction(), runner.conn.cursor() as cur:
        cur.execute(res.expanded.encode())
        rows = cur.fetchall()
    if target.panel == "Noisiest components":
        return rows  # ordered by the query itself
    return sorted((float(r[0]), *r[1:]) for r in rows)  # epoch seconds, as Grafana reads them


def _plan(runner: harness.Runner, target: harness.Target, variables: dict) -> str:
    res = runner.run(target, variables)
    with runner.conn.transaction(), runner.conn.cursor() as cur:
        cur.execute(b"EXPLAIN " + res.expanded.encode())
        return "\n".join(r[0] for r in cur.fetchall())


def _expected(
    lines: set, panel: str, start: dt.datetime, end: dt.datetime, step: float, search: str = ""
) -> list[tuple]:
    """What the panel must show, counted here from the lines written."""
    seen = [r for r in lines if start <= r[0] <= end and search.lower() in r[4].lower()]
    if panel == "Lines per level":
        c = Counter((float(int(r[0].timestamp() // step) * step), r[3]) for r in seen)
        return sorted((t, lv, n) for (t, lv), n in c.items())
    if panel == "Log lines stored (last 24 h)":
        c = Counter(float(int(r[0].timestamp() // step) * step) for r in seen)
        return sorted((t, "log_lines", n) for t, n in c.items())
    lines_by = Counter((r[1], r[2]) for r in seen)
    errors = Counter((r[1], r[2]) for r in seen if r[3] in ("ERROR", "CRITICAL"))
    rows = [(h, c, n, errors[(h, c)]) for (h, c), n in lines_by.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))[:20]


PANELS = ("Lines per level", "Noisiest components", "Log lines stored (last 24 h)")


@pytest.mark.parametrize("days", [30, 0.25])  # $__interval 1h (rollup) and 1m (raw lines)
@pytest.mark.parametrize("search", ["", "disk"])
def test_log_panels_show_what_counting_raw_lines_shows(
    stored: tuple[str, set], days: float, search: str
) -> None:
    url, lines = stored
    end = NOW - dt.timedelta(minutes=13, seconds=5)  # ragged edges at both ends
    start = end - dt.timedelta(days=days)
    dashboards = provisioning.load_dashboards()  # what Grafana reads
    targets = [t for t in harness.extract(dashboards) if t.panel in PANELS and t.kind == "sql"]
    assert {t.panel for t in targets} == set(PANELS)
    runner = _runner(url, start, end)
    try:
        for target in targets:
            variables, _ = runner.resolve(target.dashboard, dashboards[target.dashboard])
            variables["search"] = Variable("search", (search,))
            window_start, range_s = runner.window(target)
            step, _ = harness.grafana_globals(range_s, target.max_points, target.min_interval or 60)
            got = _panel(runner, target, variables)
            assert got, target.panel
            typed = search if target.dashboard == "logs" else ""  # the only one with a search box
            assert got == _expected(lines, target.panel, window_start, end, step, typed)
            forced_raw = replace(
                target,
                query=target.query.replace(NO_SEARCH, "false").replace(WHOLE_HOUR_GROUPS, "false"),
            )
            assert _panel(runner, forced_raw, variables) == got
            plan = _plan(runner, target, variables)
            served = {
                "Lines per level": search == "" and step % 3600 == 0,
                "Noisiest components": search == "",  # no time groups
                "Log lines stored (last 24 h)": step % 3600 == 0,  # no search box
            }[target.panel]
            assert served or days != 30 or search, f"{target.panel}: 30 days read raw lines"
            assert ("log_counts_hourly" in plan) is served, plan
            if served:  # only the edge days of the raw table are read
                assert plan.count(" on log_lines_p") <= 2, plan
    finally:
        runner.close()


def test_pruning_follows_the_logs_retention(pg_server: str, tmp_path: Path) -> None:
    url = f"{pg_server}/obsportal_logprune_{uuid.uuid4().hex[:8]}"
    try:
        migrate.upgrade(url)
        old, recent = NOW - dt.timedelta(days=40), NOW - dt.timedelta(days=2)
        with db_engine.get_engine(url).begin() as conn:
            ensure_partitions(conn, "log_lines", old.date(), NOW.date())
        rows = [
            (t, "cn01", "pipeline", "INFO", f"line {i}", {}, "p", i)
            for i, t in enumerate([old, old, recent])
        ]
        _write(url, tmp_path, "prune", [rows])
        assert sum(r[4] for r in _fetch(url, ROLLUP)) == 3
        migrate.maintain(url, {"log_lines": 30}, premake_days=7)
        kept = _fetch(url, ROLLUP)
        assert [(r[0], r[4]) for r in kept] == [(recent.replace(minute=0, second=0), 1)]
        assert kept == _fetch(url, RAW_COUNTS)  # the old day's partition went too
    finally:
        db_engine.drop_database(url)


def test_downgrade_removes_the_rollup_and_upgrade_backfills_it(stored: tuple[str, set]) -> None:
    url, _ = stored
    before = _fetch(url, ROLLUP)
    migrate.downgrade(url, "0008")
    gone = _fetch(
        url,
        f"SELECT to_regclass('{log_counts.TABLE}'), "
        "(SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'log_lines_count%')",
    )
    assert gone == [(None, 0)]
    migrate.upgrade(url)
    assert _fetch(url, ROLLUP) == before  # filled again from the stored lines


def test_emptying_the_log_table_empties_its_counts(pg_server: str, tmp_path: Path) -> None:
    url = f"{pg_server}/obsportal_logreset_{uuid.uuid4().hex[:8]}"
    try:
        migrate.upgrade(url)
        _write(url, tmp_path, "reset", [[(NOW, "cn01", "pipeline", "INFO", "x", {}, "r", 1)]])
        assert len(_fetch(url, ROLLUP)) == 1
        with db_engine.get_engine(url).begin() as conn:
            conn.execute(sa.text("TRUNCATE log_lines"))
        assert _fetch(url, ROLLUP) == []
    finally:
        db_engine.drop_database(url)


def test_timescale_path_is_a_continuous_aggregate_of_the_same_shape() -> None:
    ddl = "\n".join(log_counts.timescale_ddl(30))
    assert f"CREATE MATERIALIZED VIEW {log_counts.TABLE} WITH (timescaledb.continuous)" in ddl
    assert "time_bucket(INTERVAL '1 hour', time) AS bucket, host, component, level" in ddl
    assert "count(*) AS lines" in ddl
    assert f"add_retention_policy('{log_counts.TABLE}', INTERVAL '30 days')" in ddl
    plain = "\n".join(log_counts.plain_ddl())
    assert "REFERENCING NEW TABLE AS new_log_lines" in plain and "FOR EACH STATEMENT" in plain
