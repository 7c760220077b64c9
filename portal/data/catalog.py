"""The product catalog: synchronous registration (REST, CLI) and search.

Synchronous registration uses the write path's own COPY (``copy_rows`` with de-duplication on
the natural key), in one transaction, and says how many records were new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from portal.data.producer import PRODUCT_COLUMNS
from portal.data.tables import transfers
from portal.db.engine import connect_raw, get_engine
from portal.db.tables import data_products, replicas
from portal.db.writer import copy_rows
from portal.errors import PortalError


def store(url: str, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """COPY ``rows`` into ``table``, skipping those whose natural key is stored; returns the
    number of rows accepted."""
    if not rows:
        return 0
    from portal.db.storable import json_text

    json_cols = {i for i, c in enumerate(columns) if c in ("metadata", "flags", "payload")}
    prepared = [
        [json_text(v) if i in json_cols and not isinstance(v, str) else v for i, v in enumerate(r)]
        for r in rows
    ]
    with connect_raw(url, autocommit=True) as conn, conn.transaction():
        copy_rows(conn, table, columns, prepared, dedupe=True)
    return len(rows)


def store_products(url: str, rows: Sequence[Sequence[Any]]) -> int:
    """Register product rows (``producer.product_row``); returns how many were new."""
    if not rows:
        return 0
    names = [r[1] for r in rows]
    with connect_raw(url, autocommit=True) as conn, conn.transaction():
        row = conn.execute(
            "SELECT count(*) FROM data_products WHERE name = ANY(%s)", (names,)
        ).fetchone()
        known = int(row[0]) if row else 0
        from portal.db.storable import json_text

        prepared = [
            [*r[:9], r[9] if isinstance(r[9], str) else json_text(r[9]), *r[10:]] for r in rows
        ]
        copy_rows(conn, "data_products", PRODUCT_COLUMNS, prepared, dedupe=True)
    return len(set(names)) - known


@dataclass(frozen=True)
class Query:
    """What ``search`` filters on; empty fields match everything."""

    kind: str = ""
    beam: int | None = None
    site: str = ""
    state: str = ""  # product state, or a replica state at ``site``
    name: str = ""  # glob on the name (``*`` and ``?``)
    since: datetime | None = None  # covers time after ...
    until: datetime | None = None  # ... and before
    ra_deg: float | None = None
    dec_deg: float | None = None
    radius_deg: float = 1.0
    limit: int = 100


REPLICA_STATE_NAMES = ("AVAILABLE", "COPYING", "UNAVAILABLE", "BAD", "BEING_DELETED")


PRODUCT_STATE_NAMES = ("writing", "complete", "deleted")


def search(url: str, q: Query) -> list[dict[str, Any]]:
    """Products matching ``q``, newest first, each with its copies by site and state."""
    if (
        q.state
        and q.state not in PRODUCT_STATE_NAMES
        and q.state.upper() not in REPLICA_STATE_NAMES
    ):
        names = ", ".join((*PRODUCT_STATE_NAMES, *REPLICA_STATE_NAMES))
        raise PortalError(f"state {q.state!r} is not one of {names}")
    p = data_products.c
    where: list[Any] = []
    if q.kind:
        where.append(p.kind == q.kind)
    if q.beam is not None:
        where.append(p.beam == q.beam)
    if q.name:
        like = q.name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(p.name.like(like.replace("*", "%").replace("?", "_"), escape="\\"))
    if q.since is not None:
        where.append(sa.func.coalesce(p.time_end, p.created_at) >= q.since)
    if q.until is not None:
        where.append(sa.func.coalesce(p.time_start, p.created_at) <= q.until)
    if q.ra_deg is not None and q.dec_deg is not None:
        where.append(sa.func.abs(p.dec_deg - q.dec_deg) <= q.radius_deg)
        where.append(sa.func.abs(p.ra_deg - q.ra_deg) <= q.radius_deg)
    replica_state = q.state.upper() if q.state.upper() in REPLICA_STATE_NAMES else ""
    if q.state and not replica_state:
        where.append(p.state == q.state)
    if q.site or replica_state:
        r = replicas.c
        cond = [r.product_id == p.id]
        if q.site:
            cond.append(r.site == q.site)
        if replica_state:
            cond.append(r.state == replica_state)
        held: sa.ColumnElement[bool] = sa.exists().where(*cond)
        if q.site and replica_state in ("", "AVAILABLE"):  # the origin copy counts too
            held = sa.or_(held, sa.and_(p.site == q.site, p.state == "complete"))
        where.append(held)
    stmt = sa.select(data_products).where(*where).order_by(p.id.desc()).limit(q.limit)
    with get_engine(url).connect() as conn:
        found = [dict(row._mapping) for row in conn.execute(stmt)]
        ids = [f["id"] for f in found]
        copies: dict[int, list[dict[str, Any]]] = {}
        if ids:
            rows = conn.execute(
                sa.select(replicas.c.product_id, replicas.c.site, replicas.c.state).where(
                    replicas.c.product_id.in_(ids)
                )
            )
            for pid, site, state in rows:
                copies.setdefault(pid, []).append({"site": site, "state": state})
    for f in found:
        f["replicas"] = copies.get(f["id"], [])
    return found


def jsonable(product: dict[str, Any]) -> dict[str, Any]:
    """A product as JSON-ready values (times as ISO text)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in product.items()}


def product_id(url: str, name: str) -> int:
    """The id of the product named ``name``, or one clear error."""
    with get_engine(url).connect() as conn:
        found = conn.execute(
            sa.select(data_products.c.id).where(data_products.c.name == name)
        ).scalar()
    if found is None:
        raise PortalError(f"no data product named {name!r}")
    return int(found)


def queue_counts(url: str) -> dict[str, int]:
    """Transfer requests by state."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.select(transfers.c.state, sa.func.count()).group_by(transfers.c.state)
        )
        return {state: int(n) for state, n in rows}
