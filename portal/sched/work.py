"""Work kinds and the work queue: what batch work exists, in which order it should run, and the
scheduler's decisions with their reasons."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from portal.db.engine import get_engine
from portal.errors import PortalError
from portal.hookspecs import WorkKind
from portal.sched.tables import decisions, work
from portal.settings import Settings

KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,199}$")

#: The kinds this capability ships; their command is a stand-in until a data plugin registers
#: the same name with the real one.
BUILTIN = (
    WorkKind(
        "hhat-daily",
        "Build the Hhat stack of one day (key: YYYY-MM-DD).",
        priority=20,
        pointing_days=1.0,
    ),
    WorkKind(
        "hhat-monthly",
        "Build the Hhat stack of one month (key: YYYY-MM).",
        priority=10,
        pointing_days=30.0,
        max_running_minutes=600,
    ),
    WorkKind(
        "hhat-check",
        "Check one day's Hhat stack for candidates (key: YYYY-MM-DD).",
        priority=30,
        pointing_days=1.0,
    ),
    WorkKind("candidate-followup", "Follow up one candidate (key: candidate id).", priority=40),
)


def kinds(cfg: Settings) -> dict[str, WorkKind]:
    """Built-in kinds, then those plugins register (a plugin's kind replaces a built-in one)."""
    from portal import plugins

    found = {k.name: k for k in BUILTIN}
    for kind in plugins.get(cfg).results("register_work_kinds"):
        if isinstance(kind, WorkKind):
            found[kind.name] = kind
    return found


def kind_of(cfg: Settings, name: str) -> WorkKind:
    known = kinds(cfg)
    if name not in known:
        raise PortalError(f"work kind {name!r} is unknown; known: {', '.join(sorted(known))}")
    return known[name]


@dataclass(frozen=True)
class Item:
    """One row of the work queue."""

    id: int
    kind: str
    key: str
    priority: int
    pointing_days: float
    enqueued_at: datetime
    state: str
    attempts: int
    job_id: int | None
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    slurm_reason: str | None
    last_error: str | None

    @property
    def job_name(self) -> str:
        """The Slurm job name of the current attempt: the idempotency key of a submission."""
        return f"obs-work-{self.id}-{self.attempts}"


_COLUMNS = [work.c[f] for f in Item.__dataclass_fields__]


def enqueue(
    cfg: Settings, kind: str, keys: list[str], priority: int = 0, pointing_days: float | None = None
) -> int:
    """Add work items; a key already queued, running or done is left as it is (idempotent).

    A failed or cancelled item is queued again with its attempts reset. Returns how many rows
    were added or re-queued.
    """
    spec = kind_of(cfg, kind)
    for key in keys:
        if not KEY_RE.match(key):
            raise PortalError(
                f"work key {key!r} is invalid: 1-200 letters, digits or . _ : + - (no spaces)"
            )
    if not keys:
        return 0
    days = spec.pointing_days if pointing_days is None else pointing_days
    rows = [
        {"kind": kind, "key": k, "priority": priority, "pointing_days": days, "state": "queued"}
        for k in keys
    ]
    new = insert(work).values(rows)
    stmt = new.on_conflict_do_update(
        constraint="sched_work_kind_key",
        set_={
            "state": "queued",
            "attempts": 0,
            "job_id": None,
            "last_error": None,
            "enqueued_at": sa.func.now(),
            "updated_at": sa.func.now(),
        },
        where=work.c.state.in_(("failed", "cancelled")),
    ).returning(work.c.id)
    with get_engine(cfg.database_url).begin() as conn:
        return len(conn.execute(stmt).all())


def items(cfg: Settings, states: tuple[str, ...] = (), limit: int = 500) -> list[Item]:
    query = sa.select(*_COLUMNS).order_by(work.c.id).limit(limit)
    if states:
        query = query.where(work.c.state.in_(states))
    with get_engine(cfg.database_url).connect() as conn:
        return [Item(**r._mapping) for r in conn.execute(query)]


def ordered(cfg: Settings, queued: list[Item], now: datetime, age_weight: float) -> list[Item]:
    """Queued items, most urgent first: kind priority + item priority + age in hours x weight."""
    known = kinds(cfg)

    def score(item: Item) -> tuple[float, int]:
        base = (known[item.kind].priority if item.kind in known else 0) + item.priority
        age_h = (now - item.enqueued_at).total_seconds() / 3600
        return (-(base + age_h * age_weight), item.id)

    return sorted(queued, key=score)


def counts(cfg: Settings) -> dict[tuple[str, str], int]:
    """Items by (kind, state)."""
    query = sa.select(work.c.kind, work.c.state, sa.func.count()).group_by(
        work.c.kind, work.c.state
    )
    with get_engine(cfg.database_url).connect() as conn:
        return {(k, s): int(n) for k, s, n in conn.execute(query)}


def cancel(cfg: Settings, item_id: int) -> Item:
    """Mark a queued item cancelled (a submitted one is cancelled in Slurm by the caller)."""
    with get_engine(cfg.database_url).begin() as conn:
        row = conn.execute(
            work.update()
            .where(work.c.id == item_id, work.c.state.in_(("queued", "submitted", "running")))
            .values(state="cancelled", updated_at=sa.func.now())
            .returning(*_COLUMNS)
        ).first()
    if row is None:
        raise PortalError(f"work item {item_id} is not queued, submitted or running")
    return Item(**row._mapping)


@dataclass(frozen=True)
class Decision:
    id: int
    time: datetime
    decision: str
    reason: str
    work_id: int | None
    job_id: int | None
    details: dict[str, Any]


def decide(
    conn: sa.Connection,
    decision: str,
    reason: str,
    work_id: int | None = None,
    job_id: int | None = None,
    **details: Any,
) -> None:
    """Record one scheduler decision and why (in the caller's transaction)."""
    conn.execute(
        decisions.insert().values(
            decision=decision, reason=reason, work_id=work_id, job_id=job_id, details=details
        )
    )


def recent_decisions(cfg: Settings, limit: int = 50) -> list[Decision]:
    query = (
        sa.select(*[decisions.c[f] for f in Decision.__dataclass_fields__])
        .order_by(decisions.c.id.desc())
        .limit(limit)
    )
    with get_engine(cfg.database_url).connect() as conn:
        return [Decision(**r._mapping) for r in conn.execute(query)]
