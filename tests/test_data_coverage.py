"""Hhat coverage per sky position: missing days explained from the pointings (no data, RFI,
failed job, pending), monthly and cumulative stacks current or behind."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from portal.data import catalog, coverage, producer
from portal.db.engine import get_engine
from portal.db.timeseries import ensure_partitions
from portal.settings import Settings
from tests.conftest import run_portal
from tests.data_fixtures import rows, tag


def test_missing_days_and_their_reasons(cfg: Settings) -> None:
    t = tag()
    beam = random.randrange(70_000, 79_999)
    sky = f"beam{beam:04d}"
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    day = [(now - timedelta(days=4 - i)).replace(hour=0) for i in range(5)]

    def stack(kind: str, start: datetime, end: datetime) -> dict[str, object]:
        return {
            "kind": kind,
            "name": f"cov-{t}/{kind}/{start:%Y%m%d}",
            "path": f"/data/cov-{t}/{kind}",
            "size_bytes": 1,
            "beam": beam,
            "time_start": start,
            "time_end": end,
        }

    catalog.store_products(
        cfg.database_url,
        rows(
            [
                stack("hhat_daily", day[0], day[1]),
                stack("hhat_monthly", day[0].replace(day=1), day[1]),  # includes day 0
                stack("hhat_cumulative", day[0] - timedelta(days=400), day[0]),  # behind
            ]
        ),
    )
    pointings = [
        {
            "time": day[2] + timedelta(hours=h),
            "beam": beam,
            "ra_deg": 1.0,
            "dec_deg": 2.0,
            "duration_s": 3600,
            "rfi_fraction": 0.9,
        }
        for h in range(3)
    ] + [
        {
            "time": day[3] + timedelta(hours=h),
            "beam": beam,
            "ra_deg": 1.0,
            "dec_deg": 2.0,
            "duration_s": 3600,
            "rfi_fraction": 0.1,
        }
        for h in range(3)
    ]
    with get_engine(cfg.database_url).begin() as conn:  # past days get their own partitions
        ensure_partitions(conn, "pointings", day[0].date(), now.date())
    catalog.store(
        cfg.database_url,
        "pointings",
        producer.POINTING_COLUMNS,
        [producer.pointing_row(p) for p in pointings],
    )
    try:
        (pos,) = coverage.coverage(cfg.database_url, days=5, sky=sky, now=now)
        assert pos.present == [day[0].date()]
        assert pos.missing == {
            day[1].date(): "no data",
            day[2].date(): "RFI",
            day[3].date(): "failed job",
            day[4].date(): "pending",
        }
        assert pos.monthly_current and not pos.cumulative_current
        assert coverage.summary(pos).startswith("3 missing: ")
        # the CLI judges at the real time of day: yesterday's stack may still be due ("pending"
        # rather than "failed job" just after midnight); the RFI day is missing at any hour
        out = run_portal("data", "coverage", "--days", "3", "--sky", sky, check=True).stdout
        assert "monthly current" in out and "cumulative behind" in out and "RFI" in out
    finally:  # other tests count the session's past pointings: leave none behind
        with get_engine(cfg.database_url).begin() as conn:
            conn.execute(sa.text("DELETE FROM pointings WHERE beam = :b"), {"b": beam})
