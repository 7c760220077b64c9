"""Re-verify the copies at a site: a checksum that no longer matches makes the copy BAD and
queues it again (the rule evaluator and the workers then re-copy it)."""

from __future__ import annotations

from portal.data import checksum as checksums
from portal.data import sites as site_ops
from portal.db.engine import connect_raw
from portal.events import bus as events
from portal.settings import Settings

BATCH = 64


def site(cfg: Settings, name: str) -> tuple[int, int]:
    """Check every AVAILABLE copy at site ``name``; returns (checked, found BAD).

    A copy missing or different at the site is BAD; a site that cannot be reached raises
    ``PortalError`` and marks nothing."""
    url = cfg.database_url
    where = site_ops.load(url, name)
    with connect_raw(url, autocommit=True) as conn:
        copies = conn.execute(
            "SELECT r.product_id, r.path, p.checksum, p.name FROM replicas r "
            "JOIN data_products p ON p.id = r.product_id "
            "WHERE r.site = %s AND r.state = 'AVAILABLE' AND p.checksum IS NOT NULL",
            (name,),
        ).fetchall()
    found: dict[str, str] = {}
    by_algo: dict[str, list[str]] = {}
    for _pid, path, expected, _pname in copies:
        by_algo.setdefault(checksums.parse(expected)[0], []).append(path)
    for algo, paths in by_algo.items():  # one command per batch; an unreachable site raises
        for i in range(0, len(paths), BATCH):
            found.update(where.checksums(paths[i : i + BATCH], algo))
    bad = 0
    for pid, path, expected, pname in copies:
        got = found.get(path, "nothing (missing or unreadable)")
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
