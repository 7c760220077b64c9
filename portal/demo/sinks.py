"""Where the simulator's side records go: pointings, beam events, data products, events."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from portal.db.tables import data_products
from portal.events import bus as events

log = logging.getLogger(__name__)


def save_products(conn: sa.Connection, products: Iterable[dict[str, Any]]) -> int:
    """Insert data products; a name already stored is left alone (re-seeding is idempotent)."""
    rows = [{**p, "metadata": p.get("metadata", {})} for p in products]
    if not rows:
        return 0
    stmt = insert(data_products).on_conflict_do_nothing(index_elements=["name"])
    conn.execute(stmt, rows)
    return len(rows)


def publish_all(url: str, items: Iterable[tuple[str, dict[str, Any]]], source: str) -> None:
    """Publish the step's events; a database outage only costs these (logged) notices."""
    for topic, payload in items:
        try:
            events.publish(url, topic, json.loads(json.dumps(payload, default=str)), source=source)
        except Exception as exc:
            log.warning("demo: event %s not published (%s)", topic, str(exc).splitlines()[0])
