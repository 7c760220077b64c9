"""Replication rules and their evaluator (``portal data evaluate``, a ``portal run`` component).

A rule says "every product of kind K whose metadata contains S has a verified copy at site X".
Each pass queues a transfer for every matching product without a copy there, counts how many
have one, and sets the rule's state: OK (all), REPLICATING, STUCK (no copy gained for
``PORTAL_DATA_STUCK_AFTER`` since it was last complete; the event and the metric carry the
failing files' last error) or SUSPENDED (by an operator).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from portal.data import settings as data_settings
from portal.db.engine import connect_raw
from portal.errors import PortalError
from portal.events import bus as events
from portal.settings import Settings

log = logging.getLogger(__name__)
EVALUATE_LOCK = 0x0DA7A_E7A1


@dataclass(frozen=True)
class RuleState:
    name: str
    site: str
    state: str
    total: int
    done: int
    last_error: str | None


def add(
    url: str, name: str, kind: str, site: str, selector: dict[str, Any], within_s: int
) -> dict[str, Any] | None:
    """Create or change a rule; returns its previous definition (audit) or None."""
    import json

    with connect_raw(url, autocommit=True) as conn, conn.transaction():
        if conn.execute("SELECT 1 FROM data_sites WHERE name = %s", (site,)).fetchone() is None:
            raise PortalError(f"no site named {site!r} (portal data site add)")
        before = conn.execute(
            "SELECT kind, site, selector, within_s, state FROM replication_rules WHERE name = %s",
            (name,),
        ).fetchone()
        conn.execute(
            "INSERT INTO replication_rules (name, kind, selector, site, within_s) "
            "VALUES (%s, %s, %s::jsonb, %s, %s) ON CONFLICT (name) DO UPDATE SET "
            "kind = excluded.kind, selector = excluded.selector, site = excluded.site, "
            "within_s = excluded.within_s, updated_at = now()",
            (name, kind, json.dumps(selector), site, within_s),
        )
    if before is None:
        return None
    return dict(zip(("kind", "site", "selector", "within_s", "state"), before, strict=True))


def set_suspended(url: str, name: str, suspended: bool) -> str:
    """Suspend or resume a rule; returns its state before."""
    with connect_raw(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT state FROM replication_rules WHERE name = %s", (name,)
        ).fetchone()
        if row is None:
            raise PortalError(f"no replication rule named {name!r}")
        conn.execute(
            "UPDATE replication_rules SET state = %s, progress_at = now(), updated_at = now() "
            "WHERE name = %s",
            ("SUSPENDED" if suspended else "REPLICATING", name),
        )
        return str(row[0])


def listing(url: str) -> list[dict[str, Any]]:
    with connect_raw(url, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT name, kind, selector, site, within_s, state, total, done, progress_at, "
            "last_error FROM replication_rules ORDER BY name"
        )
        cols = [d.name for d in cur.description or []]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


#: The products a rule covers: its kind, metadata containing its selector, not made at its site
_MATCH = """
    FROM replication_rules r JOIN data_products p ON p.kind = r.kind
      AND p.metadata @> r.selector AND p.state = 'complete' AND p.site <> r.site
    WHERE r.id = %(rule)s
"""


def evaluate(cfg: Settings) -> list[RuleState]:
    """One pass over every rule (one evaluator at a time, across processes)."""
    url = cfg.database_url
    stuck_after = float(data_settings.value(cfg, "PORTAL_DATA_STUCK_AFTER"))
    changed: list[tuple[str, str, str, dict[str, Any]]] = []
    out: list[RuleState] = []
    with connect_raw(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (EVALUATE_LOCK,))
        rules = conn.execute(
            "SELECT id, name, site, state, done FROM replication_rules ORDER BY id"
        ).fetchall()
        for rule_id, name, site, old_state, old_done in rules:
            if old_state == "SUSPENDED":
                continue
            # queue what lacks a copy (a DONE request whose copy went BAD or away is re-queued)
            conn.execute(
                f"""
                INSERT INTO transfer_requests (product_id, site, rule_id, bytes_total)
                SELECT p.id, r.site, r.id, p.size_bytes
                {_MATCH}
                  AND NOT EXISTS (SELECT 1 FROM replicas x WHERE x.product_id = p.id
                                  AND x.site = r.site AND x.state IN ('AVAILABLE', 'BEING_DELETED'))
                ON CONFLICT (product_id, site) DO UPDATE SET state = 'QUEUED', attempts = 0,
                  next_attempt_at = now(), updated_at = now(), rule_id = excluded.rule_id
                WHERE transfer_requests.state = 'DONE'
                """,
                {"rule": rule_id},
            )
            total, done = conn.execute(
                f"""
                SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM replicas x
                  WHERE x.product_id = p.id AND x.site = r.site
                  AND x.state IN ('AVAILABLE', 'BEING_DELETED')))
                {_MATCH}
                """,
                {"rule": rule_id},
            ).fetchone() or (0, 0)
            error = conn.execute(
                "SELECT last_error FROM transfer_requests WHERE rule_id = %s AND site = %s "
                "AND state <> 'DONE' AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
                (rule_id, site),
            ).fetchone()
            last_error = error[0] if error else None
            if done != old_done or done >= total:  # the clock runs only while copies lack
                conn.execute(
                    "UPDATE replication_rules SET progress_at = now() WHERE id = %s", (rule_id,)
                )
            quiet = conn.execute(
                "SELECT extract(epoch FROM now() - progress_at) FROM replication_rules "
                "WHERE id = %s",
                (rule_id,),
            ).fetchone()
            idle_s = float(quiet[0]) if quiet else 0.0
            if done >= total:
                state = "OK"
            elif idle_s >= stuck_after:
                state = "STUCK"
            else:
                state = "REPLICATING"
            conn.execute(
                "UPDATE replication_rules SET state = %s, total = %s, done = %s, last_error = %s, "
                "updated_at = now() WHERE id = %s",
                (state, total, done, last_error, rule_id),
            )
            out.append(RuleState(name, site, state, int(total), int(done), last_error))
            if state != old_state:
                payload = {
                    "rule": name,
                    "site": site,
                    "from": old_state,
                    "total": total,
                    "done": done,
                    "last_error": last_error,
                }
                changed.append((name, old_state, state, payload))
    for _name, _old, state, payload in changed:
        events.publish(url, f"data.rule.{state.lower()}", payload, source="data-evaluator")
    return out


def run(cfg: Settings, stop: threading.Event | None = None) -> None:
    """The evaluator loop: rules, metrics and due deletions, each evaluate interval."""
    from portal.data import deletion, metrics, retention

    stop = stop or threading.Event()
    interval = float(data_settings.value(cfg, "PORTAL_DATA_EVALUATE_INTERVAL"))
    warned = False
    while not stop.is_set():
        try:
            states = evaluate(cfg)
            retention.apply(cfg)
            deletion.run_due(cfg)
            try:
                metrics.push(cfg, states)
                warned = False
            except OSError as exc:
                if not warned:
                    log.warning("data evaluator: Pushgateway unreachable (%s)", exc)
                warned = True
        except Exception as exc:  # noqa: BLE001 - database away: try again next pass
            log.warning("data evaluator: %s", str(exc).splitlines()[0] if str(exc) else exc)
        stop.wait(interval)
