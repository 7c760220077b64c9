"""Pre-aggregated pointings: hourly and daily summaries per beam and per sky region.

A year of pointings is about 60 M rows; a 30-day summary over them takes seconds. Four small
tables hold what the summaries need (count, sums, maximum), maintained incrementally: on plain
PostgreSQL by a statement-level trigger on ``pointings`` (every COPY batch of the write path
adds its own rows, once; a replayed row that ``ON CONFLICT DO NOTHING`` skips adds nothing),
with TimescaleDB as continuous aggregates of the same names and columns. A summary of any
window reads whole days and whole hours from them and only the ragged edges from the raw table,
so it equals the raw query exactly (``raw_summary``). By default the window is widened to whole
hours (``hours``): then nothing at all is read from the raw table, whose newest rows a time
index (BRIN) does not cover until they are summarised by VACUUM.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.engine import Connection

By = Literal["beam", "region"]
REGION_DEG = 10  # sky regions: 10 x 10 degree cells of RA/Dec, 36 x 18 of them
#: (table, bucket width, grouping column) of each summary
TABLES: dict[tuple[By, str], str] = {
    ("beam", "hour"): "pointing_beam_hourly",
    ("beam", "day"): "pointing_beam_daily",
    ("region", "hour"): "pointing_region_hourly",
    ("region", "day"): "pointing_region_daily",
}
REGION_SQL = (
    f"(least(floor((dec_deg + 90) / {REGION_DEG}), {180 // REGION_DEG - 1})::int "
    f"* {360 // REGION_DEG} + least(floor((ra_deg - 360 * floor(ra_deg / 360)) / {REGION_DEG}), "
    f"{360 // REGION_DEG - 1})::int)"
)
#: Aggregates of raw rows, named as the summary columns (mergeable: sums, counts, maximum).
RAW_AGGREGATES = (
    "count(*) AS n, coalesce(sum(duration_s), 0) AS duration_s, "
    "coalesce(sum(data_bytes), 0)::bigint AS data_bytes, "
    "coalesce(sum(rfi_fraction), 0) AS rfi_sum, count(rfi_fraction) AS rfi_n, "
    "max(max_dm) AS max_dm, coalesce(sum(n_candidates), 0) AS n_candidates"
)
COLUMNS = "n, duration_s, data_bytes, rfi_sum, rfi_n, max_dm, n_candidates"


def key_sql(by: By) -> str:
    return "beam" if by == "beam" else REGION_SQL


def table_ddl(table: str, key: By) -> str:
    return (
        f"CREATE TABLE {table} (bucket timestamptz NOT NULL, {key} integer NOT NULL, "
        "n bigint NOT NULL, duration_s double precision NOT NULL, data_bytes bigint NOT NULL, "
        "rfi_sum double precision NOT NULL, rfi_n bigint NOT NULL, max_dm double precision, "
        f"n_candidates bigint NOT NULL, PRIMARY KEY (bucket, {key}))"
    )


ON_CONFLICT = (
    "ON CONFLICT (bucket, {by}) DO UPDATE SET n = s.n + excluded.n, "
    "duration_s = s.duration_s + excluded.duration_s, "
    "data_bytes = s.data_bytes + excluded.data_bytes, "
    "rfi_sum = s.rfi_sum + excluded.rfi_sum, rfi_n = s.rfi_n + excluded.rfi_n, "
    "max_dm = greatest(s.max_dm, excluded.max_dm), "
    "n_candidates = s.n_candidates + excluded.n_candidates"
)
#: Hourly aggregates summed into days.
MERGED = (
    "sum(n) AS n, sum(duration_s) AS duration_s, sum(data_bytes)::bigint AS data_bytes, "
    "sum(rfi_sum) AS rfi_sum, sum(rfi_n)::bigint AS rfi_n, max(max_dm) AS max_dm, "
    "sum(n_candidates)::bigint AS n_candidates"
)


def _upsert(by: By, source: str) -> str:
    """One statement: ``source`` rows aggregated by hour once, added to the hourly table, and
    those hours summed into the daily one. Sorted, so concurrent writers lock summary rows in
    one order and cannot deadlock."""
    hourly, daily = TABLES[(by, "hour")], TABLES[(by, "day")]
    return (
        f"WITH h AS (SELECT date_trunc('hour', time, 'UTC') AS bucket, {key_sql(by)} AS {by}, "
        f"{RAW_AGGREGATES} FROM {source} GROUP BY 1, 2), "
        f"hourly AS (INSERT INTO {hourly} AS s (bucket, {by}, {COLUMNS}) "
        f"SELECT * FROM h ORDER BY 1, 2 {ON_CONFLICT.format(by=by)}) "
        f"INSERT INTO {daily} AS s (bucket, {by}, {COLUMNS}) "
        f"SELECT date_trunc('day', bucket, 'UTC'), {by}, {MERGED} FROM h GROUP BY 1, 2 "
        f"ORDER BY 1, 2 {ON_CONFLICT.format(by=by)}"
    )


def plain_ddl() -> list[str]:
    """Summary tables, the trigger that keeps them, and a backfill of the rows stored so far."""
    statements = [table_ddl(t, by) for (by, _), t in TABLES.items()]
    body = ";\n".join(_upsert(by, "new_pointings") for by in ("beam", "region"))
    statements += [
        "CREATE FUNCTION pointings_summarise() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n{body};\nRETURN NULL;\nEND $$",
        "CREATE TRIGGER pointings_summarise AFTER INSERT ON pointings "
        "REFERENCING NEW TABLE AS new_pointings "
        "FOR EACH STATEMENT EXECUTE FUNCTION pointings_summarise()",
    ]
    statements += [_upsert(by, "pointings") for by in ("beam", "region")]
    return statements


def plain_teardown_ddl() -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS pointings_summarise ON pointings",
        "DROP FUNCTION IF EXISTS pointings_summarise()",
        *(f"DROP TABLE IF EXISTS {t}" for t in TABLES.values()),
    ]


def timescale_ddl() -> list[str]:
    """The same four summaries as TimescaleDB continuous aggregates, refreshed by policy."""
    out = []
    for (by, width), table in TABLES.items():
        out += [
            f"CREATE MATERIALIZED VIEW {table} WITH (timescaledb.continuous) AS "
            f"SELECT time_bucket(INTERVAL '1 {width}', time) AS bucket, {key_sql(by)} AS {by}, "
            f"{RAW_AGGREGATES} FROM pointings GROUP BY 1, 2 WITH NO DATA",
            f"SELECT add_continuous_aggregate_policy('{table}', "
            f"start_offset => INTERVAL '{'3 days' if width == 'hour' else '40 days'}', "
            f"end_offset => NULL, schedule_interval => INTERVAL '5 minutes')",
            f"ALTER MATERIALIZED VIEW {table} SET (timescaledb.materialized_only = false)",
        ]
    return out


def timescale_teardown_ddl() -> list[str]:
    return [f"DROP MATERIALIZED VIEW IF EXISTS {t}" for t in TABLES.values()]


def _floor(t: datetime, width: str) -> datetime:
    t = t.astimezone(UTC)
    if width == "day":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    return t.replace(minute=0, second=0, microsecond=0)


def _ceil(t: datetime, width: str) -> datetime:
    low = _floor(t, width)
    return low if low == t else low + (timedelta(days=1) if width == "day" else timedelta(hours=1))


def pieces(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """``[start, end)`` cut into ``raw`` edges, whole ``hour`` and whole ``day`` spans."""
    h0, h1 = _ceil(start, "hour"), _floor(end, "hour")
    if h0 >= h1:
        return [("raw", start, end)] if start < end else []
    d0, d1 = _ceil(h0, "day"), _floor(h1, "day")
    spans = [("raw", start, h0)]
    if d0 < d1:
        spans += [("hour", h0, d0), ("day", d0, d1), ("hour", d1, h1)]
    else:
        spans += [("hour", h0, h1)]
    spans.append(("raw", h1, end))
    return [s for s in spans if s[1] < s[2]]


def _piece_sql(by: By, kind: str, i: int) -> str:
    if kind == "raw":
        return (
            f"SELECT {key_sql(by)} AS k, {RAW_AGGREGATES} FROM pointings "
            f"WHERE time >= :s{i} AND time < :e{i} GROUP BY 1"
        )
    table = TABLES[(by, kind)]
    return f"SELECT {by} AS k, {COLUMNS} FROM {table} WHERE bucket >= :s{i} AND bucket < :e{i}"


FINAL = (
    "SELECT k AS {by}, sum(n)::bigint AS pointings, sum(duration_s) AS duration_s, "
    "sum(data_bytes)::bigint AS data_bytes, sum(rfi_sum) / nullif(sum(rfi_n), 0) AS rfi_mean, "
    "max(max_dm) AS max_dm, sum(n_candidates)::bigint AS n_candidates "
    "FROM ({union}) p GROUP BY k ORDER BY k"
)


def hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` widened to whole hours (the window ``summary`` reads by default)."""
    return _floor(start, "hour"), _ceil(end, "hour")


def summary(
    conn: Connection, start: datetime, end: datetime, by: By = "beam", exact: bool = False
) -> list[dict]:
    """Per beam (or sky region): pointings, observed seconds, bytes, mean RFI fraction, largest
    DM and candidates over ``hours(start, end)``, or with ``exact`` over ``[start, end)`` itself
    (the partial hours at the edges then come from the raw rows)."""
    if not exact:
        start, end = hours(start, end)
    spans = pieces(start, end)
    if not spans:
        return []
    params: dict[str, Any] = {}
    parts = []
    for i, (kind, s, e) in enumerate(spans):
        parts.append(_piece_sql(by, kind, i))
        params[f"s{i}"], params[f"e{i}"] = s, e
    sql = FINAL.format(by=by, union=" UNION ALL ".join(parts))
    return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def raw_summary(conn: Connection, start: datetime, end: datetime, by: By = "beam") -> list[dict]:
    """The same figures straight from ``pointings`` (what ``summary`` must equal)."""
    sql = FINAL.format(
        by=by,
        union=f"SELECT {key_sql(by)} AS k, {RAW_AGGREGATES} FROM pointings "
        "WHERE time >= :s AND time < :e GROUP BY 1",
    )
    return [dict(r._mapping) for r in conn.execute(text(sql), {"s": start, "e": end})]
