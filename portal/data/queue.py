"""The transfer queue as people see it: by site and state (waiting apart from failing), copies
in progress, throughput, ETA; and putting a site's given-up transfers back in the queue."""

from __future__ import annotations

from typing import Any

from portal.db.engine import connect_raw


def requeue_site(url: str, site: str) -> int:
    """Put a site's FAILED requests back in the queue (after fixing the site); returns count."""
    with connect_raw(url, autocommit=True) as conn:
        cur = conn.execute(
            "UPDATE transfer_requests SET state = 'QUEUED', attempts = 0, next_attempt_at = "
            "now(), updated_at = now() WHERE site = %s AND state = 'FAILED'",
            (site,),
        )
        return cur.rowcount


def snapshot(url: str) -> dict[str, Any]:
    """What the Transfers page and ``portal data transfers`` show."""
    with connect_raw(url, autocommit=True) as conn:
        by_state = conn.execute(
            "SELECT site, state, CASE WHEN state = 'QUEUED' AND last_error IS NOT NULL "
            "THEN 'failing, will retry' WHEN state = 'QUEUED' THEN 'waiting in queue' "
            "WHEN state = 'SUBMITTED' THEN 'copying' WHEN state = 'FAILED' THEN 'gave up' "
            "ELSE 'done' END, count(*), coalesce(sum(bytes_total - bytes_done), 0) "
            "FROM transfer_requests GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ).fetchall()
        active = conn.execute(
            "SELECT p.name, t.site, t.worker, t.bytes_done, t.bytes_total, t.started_at, "
            "t.attempts FROM transfer_requests t JOIN data_products p ON p.id = t.product_id "
            "WHERE t.state = 'SUBMITTED' AND t.lease_until >= now() ORDER BY t.started_at"
        ).fetchall()
        failing = conn.execute(
            "SELECT site, coalesce(error_class, '-'), count(*), max(last_error) "
            "FROM transfer_requests WHERE last_error IS NOT NULL AND state <> 'DONE' "
            "GROUP BY 1, 2 ORDER BY 3 DESC"
        ).fetchall()
        rate = conn.execute(
            "SELECT coalesce(sum(bytes_total), 0), "
            "coalesce(extract(epoch FROM max(finished_at) - min(started_at)), 0) "
            "FROM transfer_requests WHERE state = 'DONE' "
            "AND finished_at > now() - interval '1 hour'"
        ).fetchone()
        per_day = conn.execute(
            "SELECT coalesce(sum(size_bytes), 0) / 1 FROM data_products "
            "WHERE created_at > now() - interval '1 day'"
        ).fetchone()
    moved, span = rate or (0, 0)
    mb_s = float(moved) / float(span) / 1e6 if span and float(span) > 0 else 0.0
    waiting = sum(int(b) for _s, st, _w, _n, b in by_state if st in ("QUEUED", "SUBMITTED"))
    eta_h = waiting / (mb_s * 1e6) / 3600 if mb_s > 0 else None
    daily = float(per_day[0]) if per_day and per_day[0] else 0.0
    return {
        "by_state": [
            {"site": s, "state": st, "status": w, "requests": int(n), "bytes_left": int(b)}
            for s, st, w, n, b in by_state
        ],
        "active": [
            {
                "product": n,
                "site": s,
                "worker": w,
                "bytes_done": int(d),
                "bytes_total": int(t),
                "started_at": st,
                "attempts": a,
            }
            for n, s, w, d, t, st, a in active
        ],
        "failing": [
            {"site": s, "error_class": c, "requests": int(n), "last_error": e}
            for s, c, n, e in failing
        ],
        "throughput_mb_s": mb_s,
        "backlog_bytes": waiting,
        "eta_hours": eta_h,
        "backlog_days": waiting / daily if daily else None,
    }
