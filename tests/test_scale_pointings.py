"""Year-scale pointings: summaries kept by the write path equal the raw query."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from portal.db import engine as db_engine
from portal.db import migrate, summaries
from portal.db.timeseries import ensure_partitions

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAYS = 33


def _rows(n: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        when = NOW - dt.timedelta(seconds=rng.uniform(0, DAYS * 86400))
        rfi = None if rng.random() < 0.1 else round(rng.random(), 3)
        out.append(
            (
                when,
                rng.randrange(64),
                rng.uniform(0, 360),
                rng.uniform(-90, 90),
                rng.choice([60.0, 300.0, 600.0]),
                rfi,
                rng.randrange(10**9),
                rng.uniform(0, 2000),
                rng.randrange(20),
            )
        )
    return out


def _copy(url: str, rows: list[tuple]) -> None:
    """The write path's way: COPY into ``pointings`` (the summary trigger sees the batch)."""
    buf = io.StringIO()
    for r in rows:
        cells = [
            "\\N" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v))
            for v in r
        ]
        buf.write("\t".join(cells) + "\t{}\n")
    with db_engine.connect_raw(url) as conn, conn.cursor() as cur:
        cols = "time, beam, ra_deg, dec_deg, duration_s, rfi_fraction, data_bytes, max_dm, "
        with cur.copy(f"COPY pointings ({cols}n_candidates, flags) FROM STDIN") as copy:
            copy.write(buf.getvalue())


def _same(a: list[dict], b: list[dict]) -> None:
    assert [r[next(iter(r))] for r in a] == [r[next(iter(r))] for r in b]  # same keys
    for x, y in zip(a, b, strict=True):
        for col in x:
            if isinstance(x[col], float) or isinstance(y[col], float):
                assert x[col] == pytest.approx(y[col], rel=1e-9), col
            else:
                assert x[col] == y[col], col


@pytest.fixture(scope="module")
def seeded(pg_server: str) -> Iterator[str]:
    """A database of this module's own: the row counts must not see other tests' pointings."""
    database_url = f"{pg_server}/obsportal_pointings_{uuid.uuid4().hex[:8]}"
    migrate.upgrade(database_url)
    with db_engine.get_engine(database_url).begin() as conn:
        ensure_partitions(conn, "pointings", (NOW - dt.timedelta(days=DAYS + 1)).date(), NOW.date())
    rows = _rows(6000, seed=1)
    _copy(database_url, rows[:4000])
    _copy(database_url, rows[4000:])
    # a spool replay: rows already stored are skipped (ON CONFLICT DO NOTHING), not counted twice
    with db_engine.get_engine(database_url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO pointings (time, beam, ra_deg, dec_deg, duration_s, rfi_fraction, "
                "data_bytes, max_dm, n_candidates, flags) VALUES (:t, :b, :ra, :dec, :d, :r, "
                ":bytes, :dm, :c, CAST(:f AS jsonb)) ON CONFLICT DO NOTHING"
            ),
            [
                dict(
                    t=r[0],
                    b=r[1],
                    ra=r[2],
                    dec=r[3],
                    d=r[4],
                    r=r[5],
                    bytes=r[6],
                    dm=r[7],
                    c=r[8],
                    f=json.dumps({}),
                )
                for r in rows[:50] + _rows(30, seed=2)  # 50 repeats, 30 new rows
            ],
        )
    yield database_url
    db_engine.drop_database(database_url)


@pytest.mark.parametrize("by", ["beam", "region"])
@pytest.mark.parametrize(
    "span",
    [
        dt.timedelta(hours=24),
        dt.timedelta(days=30),
        dt.timedelta(minutes=20),  # inside one hour: raw only
        dt.timedelta(days=2, hours=5, minutes=7),
    ],
)
def test_summary_equals_the_raw_query(seeded: str, by: str, span: dt.timedelta) -> None:
    end = NOW - dt.timedelta(minutes=13, seconds=5)  # ragged edges at both ends
    start = end - span
    whole = summaries.hours(start, end)
    assert whole[0] <= start and whole[1] >= end and whole[0].minute == whole[1].minute == 0
    with db_engine.get_engine(seeded).connect() as conn:
        exact = summaries.summary(conn, start, end, by, exact=True)  # type: ignore[arg-type]
        raw = summaries.raw_summary(conn, start, end, by)  # type: ignore[arg-type]
        fast = summaries.summary(conn, start, end, by)  # type: ignore[arg-type]
        raw_whole = summaries.raw_summary(conn, *whole, by)  # type: ignore[arg-type]
    assert raw, "the window has pointings"
    _same(exact, raw)
    _same(fast, raw_whole)
    assert sum(r["pointings"] for r in exact) == sum(r["pointings"] for r in raw)


def test_summaries_read_whole_hours_and_days_and_count_every_row_once(seeded: str) -> None:
    end = NOW
    kinds = [k for k, _, _ in summaries.pieces(end - dt.timedelta(days=30), end)]
    assert "day" in kinds and "hour" in kinds
    with db_engine.get_engine(seeded).connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM pointings")).scalar_one()
        summed = conn.execute(sa.text("SELECT sum(n) FROM pointing_beam_hourly")).scalar_one()
        daily = conn.execute(sa.text("SELECT sum(n) FROM pointing_region_daily")).scalar_one()
    assert stored == 6030 and summed == stored and daily == stored


def test_timescale_path_is_continuous_aggregates_of_the_same_shape() -> None:
    ddl = "\n".join(summaries.timescale_ddl())
    for table in summaries.TABLES.values():
        assert f"CREATE MATERIALIZED VIEW {table} WITH (timescaledb.continuous)" in ddl
        assert f"add_continuous_aggregate_policy('{table}'" in ddl
    assert "time_bucket(INTERVAL '1 hour', time)" in ddl
    assert "time_bucket(INTERVAL '1 day', time)" in ddl
    assert ddl.count(summaries.RAW_AGGREGATES) == 4  # the columns the summary queries read
    plain = "\n".join(summaries.plain_ddl())
    assert "REFERENCING NEW TABLE AS new_pointings" in plain
