"""Safe deletion: announced, then done after a veto window, only while other copies hold.

A copy may go only when another verified copy remains elsewhere and no replication rule needs
one at that site. A request is refused (and audited) otherwise; an accepted one is announced
(event ``data.deletion.announced``), waits ``PORTAL_DATA_VETO_WINDOW`` during which an operator
may veto it (``portal data veto``), and is carried out by the rule evaluator, which checks the
same conditions again first. Every step writes one audit entry.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import psycopg

from portal.auth import audit
from portal.auth.identity import Identity
from portal.data import settings as data_settings
from portal.data import sites as site_ops
from portal.db.engine import connect_raw
from portal.errors import PortalError
from portal.events import bus as events
from portal.settings import Settings

SYSTEM = Identity("data-evaluator", "service", "operator", address="portal")


@dataclass(frozen=True)
class Copy:
    product_id: int
    name: str
    kind: str
    site: str
    path: str
    origin: bool  # the copy where the product was made (``data_products.site``)


def find_copy(conn: psycopg.Connection, name: str, site: str) -> Copy:
    row = conn.execute(
        "SELECT id, name, kind, site, path, state FROM data_products WHERE name = %s", (name,)
    ).fetchone()
    if row is None:
        raise PortalError(f"no data product named {name!r}")
    pid, pname, kind, origin_site, path, state = row
    if origin_site == site and state == "complete":
        return Copy(pid, pname, kind, site, path, True)
    rep = conn.execute(
        "SELECT path FROM replicas WHERE product_id = %s AND site = %s", (pid, site)
    ).fetchone()
    if rep is None:
        raise PortalError(f"{name} has no copy at site {site!r}")
    return Copy(pid, pname, kind, site, rep[0], False)


def why_not(conn: psycopg.Connection, copy: Copy) -> str:
    """Why this copy may not go ("" when it may): the last verified copy, or a rule needs it."""
    others = conn.execute(
        "SELECT count(*) FROM replicas WHERE product_id = %s AND site <> %s "
        "AND state = 'AVAILABLE'",
        (copy.product_id, copy.site),
    ).fetchone()
    origin = conn.execute(
        "SELECT count(*) FROM data_products WHERE id = %s AND site <> %s AND state = 'complete'",
        (copy.product_id, copy.site),
    ).fetchone()
    if int(others[0] if others else 0) + int(origin[0] if origin else 0) == 0:
        return f"the copy at {copy.site} is the only verified copy of {copy.name}"
    rule = conn.execute(
        "SELECT r.name FROM replication_rules r JOIN data_products p ON p.id = %s "
        "AND p.kind = r.kind AND p.metadata @> r.selector "
        "WHERE r.site = %s AND r.state <> 'SUSPENDED' LIMIT 1",
        (copy.product_id, copy.site),
    ).fetchone()
    if rule is not None:
        return f"replication rule {rule[0]} needs a copy of {copy.name} at {copy.site}"
    return ""


def announce(cfg: Settings, who: Identity, name: str, site: str, reason: str) -> int:
    """Announce the deletion of ``name`` at ``site``; ``PortalError`` (audited) when refused."""
    url = cfg.database_url
    window = float(data_settings.value(cfg, "PORTAL_DATA_VETO_WINDOW"))
    target = f"{name}@{site}"
    with connect_raw(url, autocommit=True) as conn, conn.transaction():
        copy = find_copy(conn, name, site)
        pending = conn.execute(
            "SELECT id FROM data_deletions WHERE product_id = %s AND site = %s "
            "AND state = 'ANNOUNCED'",
            (copy.product_id, site),
        ).fetchone()
        if pending is not None:
            raise PortalError(
                f"the deletion of {target} is announced already (deletion {pending[0]})"
            )
        refused = why_not(conn, copy)
        if refused:
            entry = audit.Entry("data.delete", target, "refused", {"site": site}, reason)
            audit.record(url, who, entry, conn=conn)
        else:
            row = conn.execute(
                "INSERT INTO data_deletions (product_id, site, requested_by, reason, not_before) "
                "VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s)) RETURNING id, "
                "not_before",
                (copy.product_id, site, who.label, reason, window),
            ).fetchone()
            assert row is not None
            conn.execute(
                "UPDATE replicas SET state = 'BEING_DELETED', updated_at = now() "
                "WHERE product_id = %s AND site = %s",
                (copy.product_id, site),
            )
            after = {"deletion": row[0], "not_before": row[1].isoformat()}
            entry = audit.Entry("data.delete", target, "ok", {"site": site}, reason, after=after)
            audit.record(url, who, entry, conn=conn)
    if refused:
        raise PortalError(f"deletion refused: {refused}")
    assert row is not None
    events.publish(
        url,
        "data.deletion.announced",
        {"id": row[0], "product": name, "site": site, "not_before": row[1], "by": who.label},
        source="data",
    )
    return int(row[0])


def veto(cfg: Settings, who: Identity, deletion_id: int, reason: str) -> None:
    """Stop an announced deletion (its copy is AVAILABLE again)."""
    url = cfg.database_url
    with connect_raw(url, autocommit=True) as conn, conn.transaction():
        row = conn.execute(
            "SELECT d.state, d.product_id, d.site, p.name FROM data_deletions d "
            "JOIN data_products p ON p.id = d.product_id WHERE d.id = %s FOR UPDATE OF d",
            (deletion_id,),
        ).fetchone()
        if row is None:
            raise PortalError(f"no deletion {deletion_id}")
        state, pid, site, name = row
        if state != "ANNOUNCED":
            raise PortalError(f"deletion {deletion_id} is {state}, not ANNOUNCED: too late to veto")
        conn.execute(
            "UPDATE data_deletions SET state = 'VETOED', vetoed_by = %s, veto_reason = %s "
            "WHERE id = %s",
            (who.label, reason, deletion_id),
        )
        conn.execute(
            "UPDATE replicas SET state = 'AVAILABLE', updated_at = now() "
            "WHERE product_id = %s AND site = %s AND state = 'BEING_DELETED'",
            (pid, site),
        )
        entry = audit.Entry(
            "data.delete.veto", f"{name}@{site}", "ok", {"deletion": deletion_id}, reason
        )
        audit.record(url, who, entry, conn=conn)
    events.publish(
        url,
        "data.deletion.vetoed",
        {"id": deletion_id, "product": name, "site": site, "by": who.label, "reason": reason},
        source="data",
    )


def run_due(cfg: Settings, who: Identity = SYSTEM) -> int:
    """Carry out announced deletions whose veto window ended; returns how many were done."""
    url = cfg.database_url
    done = 0
    with connect_raw(url, autocommit=True) as conn:
        due = conn.execute(
            "SELECT d.id, p.name, d.site FROM data_deletions d JOIN data_products p "
            "ON p.id = d.product_id WHERE d.state = 'ANNOUNCED' AND d.not_before <= now() "
            "ORDER BY d.id"
        ).fetchall()
    for deletion_id, name, site in due:
        done += _carry_out(cfg, who, int(deletion_id), name, site)
    return done


def _carry_out(cfg: Settings, who: Identity, deletion_id: int, name: str, site: str) -> int:
    url = cfg.database_url
    outcome, error = "ok", ""
    with connect_raw(url, autocommit=True) as conn, conn.transaction():
        state = conn.execute(
            "SELECT state FROM data_deletions WHERE id = %s FOR UPDATE", (deletion_id,)
        ).fetchone()
        if state is None or state[0] != "ANNOUNCED":
            return 0  # vetoed or done meanwhile
        copy = find_copy(conn, name, site)
        error = why_not(conn, copy)
        if error:
            outcome = "refused"
        else:
            try:
                _remove(url, copy)
            except (PortalError, OSError) as exc:
                outcome, error = "failed", str(exc).splitlines()[0]
        new_state = {"ok": "DONE", "refused": "REFUSED", "failed": "FAILED"}[outcome]
        conn.execute(
            "UPDATE data_deletions SET state = %s, done_at = now(), error = %s WHERE id = %s",
            (new_state, error or None, deletion_id),
        )
        if outcome == "ok":
            if copy.origin:
                conn.execute(
                    "UPDATE data_products SET state = 'deleted' WHERE id = %s", (copy.product_id,)
                )
            else:
                conn.execute(
                    "DELETE FROM replicas WHERE product_id = %s AND site = %s",
                    (copy.product_id, site),
                )
        elif not copy.origin:
            conn.execute(
                "UPDATE replicas SET state = 'AVAILABLE', updated_at = now() "
                "WHERE product_id = %s AND site = %s AND state = 'BEING_DELETED'",
                (copy.product_id, site),
            )
        entry = audit.Entry(
            "data.delete.done",
            f"{name}@{site}",
            outcome if not error else f"{outcome}: {error}",
            {"deletion": deletion_id, "path": copy.path},
        )
        audit.record(url, who, entry, conn=conn)
    topic = "data.deletion.done" if outcome == "ok" else "data.deletion.failed"
    events.publish(
        url, topic, {"id": deletion_id, "product": name, "site": site, "error": error}, "data"
    )
    return int(outcome == "ok")


def _remove(url: str, copy: Copy) -> None:
    if copy.origin:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(copy.path)
        return
    site_ops.load(url, copy.site).remove(copy.path)


def listing(url: str, limit: int = 100) -> list[dict[str, Any]]:
    with connect_raw(url, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT d.id, p.name AS product, d.site, d.state, d.requested_by, d.reason, "
            "d.announced_at, d.not_before, d.vetoed_by, d.done_at, d.error "
            "FROM data_deletions d JOIN data_products p ON p.id = d.product_id "
            "ORDER BY d.id DESC LIMIT %s",
            (limit,),
        )
        cols = [d.name for d in cur.description or []]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
