"""Re-verify the copies at a site: a checksum that no longer matches makes the copy BAD and
queues it again (the rule evaluator and the workers then re-copy it)."""

from __future__ import annotations

from portal.data import checksum as checksums
from portal.data import sites as site_ops
from portal.db.engine import connect_raw
from portal.errors import PortalError
from portal.events import bus as events
from portal.settings import Settings


def site(cfg: Settings, name: str) -> tuple[int, int]:
    """Check every AVAILABLE copy at site ``name``; returns (checked, found BAD)."""
    url = cfg.database_url
    where = site_ops.load(url, name)
    with connect_raw(url, autocommit=True) as conn:
        copies = conn.execute(
            "SELECT r.product_id, r.path, p.checksum, p.name FROM replicas r "
            "JOIN data_products p ON p.id = r.product_id "
            "WHERE r.site = %s AND r.state = 'AVAILABLE' AND p.checksum IS NOT NULL",
            (name,),
        ).fetchall()
    bad = 0
    for pid, path, expected, pname in copies:
        algo, _ = checksums.parse(expected)
        try:
            got = where.checksum(path, algo)
        except PortalError as exc:
            got = f"unreadable ({exc})"
        if got == expected:
            continue
        bad += 1
        error = f"checksum mismatch at {name}: expected {expected}, got {got}"
        with connect_raw(url, autocommit=True) as conn, conn.transaction():
            conn.execute(
                "UPDATE replicas SET state = 'BAD', last_error = %s, updated_at = now() "
                "WHERE product_id = %s AND site = %s",
                (error, pid, name),
            )
            conn.execute(
                "UPDATE transfer_requests SET state = 'QUEUED', attempts = 0, "
                "next_attempt_at = now(), last_error = %s, error_class = 'checksum', "
                "updated_at = now() WHERE product_id = %s AND site = %s",
                (error, pid, name),
            )
        events.publish(
            url, "data.replica.bad", {"product": pname, "site": name, "error": error}, "data"
        )
    return len(copies), bad
