"""Storage accounting from the catalog: bytes by kind, site and day; budgets; days until full.

A site's bytes are its origin copies (products made there, not deleted) plus the replicas held
there (AVAILABLE, BAD, BEING_DELETED; copies still being made are not counted yet). The current
rate is the bytes that arrived within ``PORTAL_DATA_RATE_WINDOW``, per day; days until full is
free space over that rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portal.data import settings as data_settings
from portal.db.engine import connect_raw
from portal.settings import Settings

DAY_S = 86400.0

#: One row per copy: kind, site, bytes, when it arrived there.
_COPIES = """
    SELECT kind, site, size_bytes AS bytes, created_at AS arrived FROM data_products
      WHERE state = 'complete'
    UNION ALL
    SELECT p.kind, r.site, coalesce(r.size_bytes, p.size_bytes),
      coalesce(r.verified_at, r.requested_at)
      FROM replicas r JOIN data_products p ON p.id = r.product_id
      WHERE r.state IN ('AVAILABLE', 'BAD', 'BEING_DELETED')
"""


def days_until_full(capacity: float, used: float, rate_per_day: float) -> float | None:
    """Free bytes over the daily rate; None when nothing arrives (never full at this rate)."""
    if rate_per_day <= 0:
        return None
    return max(capacity - used, 0.0) / rate_per_day


@dataclass(frozen=True)
class SiteForecast:
    site: str
    capacity_bytes: int | None
    used_bytes: int
    rate_bytes_per_day: float
    days_until_full: float | None


def bytes_by(url: str, days: int = 30) -> list[dict[str, Any]]:
    """Bytes that arrived per kind, site and day over the last ``days`` days."""
    with connect_raw(url, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT kind, site, date_trunc('day', arrived) AS day, sum(bytes), count(*) "
            f"FROM ({_COPIES}) c WHERE arrived > now() - make_interval(days => %s) "
            f"GROUP BY 1, 2, 3 ORDER BY 3 DESC, 2, 1",
            (days,),
        ).fetchall()
    return [
        {"kind": k, "site": s, "day": d.date().isoformat(), "bytes": int(b), "products": int(n)}
        for k, s, d, b, n in rows
    ]


def forecast(cfg: Settings) -> list[SiteForecast]:
    """Per site: used bytes, the current daily rate and days until its capacity is reached."""
    window = float(data_settings.value(cfg, "PORTAL_DATA_RATE_WINDOW"))
    with connect_raw(cfg.database_url, autocommit=True) as conn:
        rows = conn.execute(
            f"""
            WITH c AS ({_COPIES})
            SELECT s.site, d.capacity_bytes, coalesce(sum(c.bytes), 0),
              coalesce(sum(c.bytes) FILTER (WHERE c.arrived > now() - make_interval(secs => %s)), 0)
            FROM (SELECT site FROM c UNION SELECT name FROM data_sites) s
            LEFT JOIN data_sites d ON d.name = s.site LEFT JOIN c ON c.site = s.site
            GROUP BY 1, 2 ORDER BY 1
            """,
            (window,),
        ).fetchall()
    out = []
    for site, capacity, used, recent in rows:
        rate = float(recent) * DAY_S / window
        days = days_until_full(float(capacity), float(used), rate) if capacity else None
        out.append(SiteForecast(site, capacity, int(used), rate, days))
    return out


def budgets(cfg: Settings) -> list[dict[str, Any]]:
    """Each kind's budget against the catalog: daily rate now, or total stored."""
    plan: dict[str, tuple[float, bool]] = data_settings.value(cfg, "PORTAL_DATA_BUDGETS")
    window = float(data_settings.value(cfg, "PORTAL_DATA_RATE_WINDOW"))
    with connect_raw(cfg.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT kind, coalesce(sum(size_bytes), 0), coalesce(sum(size_bytes) FILTER "
            "(WHERE created_at > now() - make_interval(secs => %s)), 0) FROM data_products "
            "WHERE state = 'complete' GROUP BY kind",
            (window,),
        ).fetchall()
    actual = {k: (float(total), float(recent) * DAY_S / window) for k, total, recent in rows}
    out = []
    for kind in sorted(set(plan) | set(actual)):
        budget, per_day = plan.get(kind, (0.0, True))
        total, rate = actual.get(kind, (0.0, 0.0))
        value = rate if per_day else total
        out.append(
            {
                "kind": kind,
                "budget_bytes": budget,
                "per_day": per_day,
                "actual_bytes": value,
                "ratio": value / budget if budget else None,
            }
        )
    return out


def days_text(days: float | None) -> str:
    """``12.3`` days, ``more than 10 years``, or ``–`` when nothing arrives."""
    if days is None:
        return "–"
    return "more than 10 years" if days > 3650 else f"{days:.1f}"


def human(n: float | None) -> str:
    """``4.50 TB`` (decimal units, as the budgets are written)."""
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.2f} EB"
