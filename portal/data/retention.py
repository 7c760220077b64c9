"""Retention: copies older than their class's policy at a site are proposed for deletion.

``PORTAL_DATA_RETENTION`` holds ``CLASS@SITE=DURATION`` policies (``short@local=30d``). Each
evaluator pass announces, as ``service:data-evaluator``, the deletion of copies past their
time that may go (another verified copy elsewhere, no rule needing this one); they then wait
out the veto window like any deletion. A copy an operator vetoed is not proposed again.
"""

from __future__ import annotations

import logging

from portal.auth.identity import Identity
from portal.data import deletion
from portal.data import settings as data_settings
from portal.db.engine import connect_raw
from portal.errors import PortalError
from portal.settings import Settings

log = logging.getLogger(__name__)
LIMIT = 500  # announcements per policy and pass


def apply(cfg: Settings, who: Identity = deletion.SYSTEM) -> int:
    """Announce the deletions the policies call for; returns how many were announced."""
    policies: dict[tuple[str, str], float] = data_settings.value(cfg, "PORTAL_DATA_RETENTION")
    announced = 0
    for (klass, site), keep_s in policies.items():
        with connect_raw(cfg.database_url, autocommit=True) as conn:
            names = [
                r[0]
                for r in conn.execute(
                    """
                    SELECT p.name FROM data_products p
                    WHERE p.retention = %(klass)s
                      AND ((p.site = %(site)s AND p.state = 'complete'
                            AND p.created_at < now() - make_interval(secs => %(keep)s))
                        OR EXISTS (SELECT 1 FROM replicas r WHERE r.product_id = p.id
                            AND r.site = %(site)s AND r.state = 'AVAILABLE'
                            AND coalesce(r.verified_at, r.requested_at)
                                < now() - make_interval(secs => %(keep)s)))
                      AND NOT EXISTS (SELECT 1 FROM data_deletions d WHERE d.product_id = p.id
                            AND d.site = %(site)s AND d.state IN ('ANNOUNCED', 'VETOED'))
                    ORDER BY p.created_at LIMIT %(limit)s
                    """,
                    {"klass": klass, "site": site, "keep": keep_s, "limit": LIMIT},
                )
            ]
            allowed = []
            for name in names:
                if not deletion.why_not(conn, deletion.find_copy(conn, name, site)):
                    allowed.append(name)
        for name in allowed:
            try:
                deletion.announce(cfg, who, name, site, f"retention {klass}@{site}")
                announced += 1
            except PortalError as exc:  # changed meanwhile: refused and audited, next pass
                log.info("retention: %s", exc)
    return announced
