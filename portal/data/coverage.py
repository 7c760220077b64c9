"""Hhat coverage per sky position: which daily stacks exist, which days are missing and why,
and whether the monthly and cumulative stacks include the newest daily stack.

A position is the product's ``metadata.sky``, else its beam (``beamNNNN``), else the last part
of its name; days before its first daily stack are not missing. A missing day is explained
from the pointings of that beam: ``no data`` (none recorded), ``RFI`` (mean masked fraction
above ``RFI_LIMIT``), ``pending`` (the day is not over long enough ago for its stack to be
due), else ``failed job`` (data was there, no stack).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from portal.db.engine import connect_raw

RFI_LIMIT = 0.5
DUE_AFTER = timedelta(hours=6)  # a daily stack is due this long after its day ends
_POSITION = """coalesce(metadata->>'sky',
    CASE WHEN beam >= 1000 THEN 'beam' || beam WHEN beam IS NOT NULL
      THEN 'beam' || lpad(beam::text, 4, '0') END,
    regexp_replace(name, '^.*/', ''))"""


@dataclass
class Position:
    sky: str
    present: list[date] = field(default_factory=list)
    missing: dict[date, str] = field(default_factory=dict)  # day -> no data | RFI | ...
    first_daily: date | None = None  # days before it are not missing: the position is new
    newest_daily: date | None = None
    monthly_until: datetime | None = None
    cumulative_until: datetime | None = None

    @property
    def monthly_current(self) -> bool:
        return self._covers(self.monthly_until)

    @property
    def cumulative_current(self) -> bool:
        return self._covers(self.cumulative_until)

    def _covers(self, until: datetime | None) -> bool:
        if self.newest_daily is None:
            return until is not None
        end = datetime(
            self.newest_daily.year, self.newest_daily.month, self.newest_daily.day, tzinfo=UTC
        ) + timedelta(days=1)
        return until is not None and until >= end


def _beam(sky: str) -> int | None:
    m = re.fullmatch(r"beam0*(\d+)", sky)
    return int(m[1]) if m else None


def coverage(
    url: str, days: int = 14, sky: str = "", now: datetime | None = None
) -> list[Position]:
    """Coverage of the last ``days`` days (today included) for each position (or one)."""
    now = now or datetime.now(UTC)
    first = (now - timedelta(days=days - 1)).date()
    wanted = [first + timedelta(days=i) for i in range(days)]
    positions: dict[str, Position] = {}
    with connect_raw(url, autocommit=True) as conn:
        stacks = conn.execute(
            f"SELECT {_POSITION} AS sky, kind, time_start, time_end FROM data_products "
            "WHERE kind IN ('hhat_daily', 'hhat_monthly', 'hhat_cumulative') "
            "AND state = 'complete' AND (%(sky)s = '' OR " + _POSITION + " = %(sky)s)",
            {"sky": sky},
        ).fetchall()
        for name, kind, start, end in stacks:
            pos = positions.setdefault(name, Position(name))
            if kind == "hhat_daily" and start is not None:
                day = start.astimezone(UTC).date()
                pos.newest_daily = max(pos.newest_daily or day, day)
                pos.first_daily = min(pos.first_daily or day, day)
                if day >= first:
                    pos.present.append(day)
            elif kind == "hhat_monthly" and end is not None:
                pos.monthly_until = max(pos.monthly_until or end, end)
            elif kind == "hhat_cumulative" and end is not None:
                pos.cumulative_until = max(pos.cumulative_until or end, end)
        beams = {b for b in (_beam(p) for p in positions) if b is not None}
        seen: dict[tuple[int, date], float | None] = {}
        if beams:
            rows = conn.execute(
                "SELECT beam, (time AT TIME ZONE 'UTC')::date, avg(rfi_fraction) FROM pointings "
                "WHERE beam = ANY(%s) AND time >= %s GROUP BY 1, 2",
                (sorted(beams), datetime(first.year, first.month, first.day, tzinfo=UTC)),
            ).fetchall()
            seen = {(b, d): rfi for b, d, rfi in rows}
    for pos in positions.values():
        pos.present.sort()
        have = set(pos.present)
        beam = _beam(pos.sky)
        for day in wanted:
            if day in have or pos.first_daily is None or day < pos.first_daily:
                continue
            due = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
            if now < due + DUE_AFTER:
                pos.missing[day] = "pending"
            elif beam is None:
                pos.missing[day] = "not explained (no beam)"
            elif (beam, day) not in seen:
                pos.missing[day] = "no data"
            elif (seen[(beam, day)] or 0.0) > RFI_LIMIT:
                pos.missing[day] = "RFI"
            else:
                pos.missing[day] = "failed job"
    return sorted(positions.values(), key=lambda p: p.sky)


def summary(pos: Position) -> str:
    """``3 missing: 12-01 no data, 12-02 RFI`` (or ``complete``)."""
    gaps = {d: why for d, why in pos.missing.items() if why != "pending"}
    if pos.first_daily is None:
        return "no daily stacks"
    if not gaps:
        return "complete"
    return f"{len(gaps)} missing: " + ", ".join(f"{d:%m-%d} {why}" for d, why in gaps.items())
