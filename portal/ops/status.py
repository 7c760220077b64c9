"""One view of the fleet for operators: per host its state, maintenance window, drain and lock;
whether an ops worker runs; the runs queued or running."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from portal.db.engine import get_engine
from portal.inventory import registry
from portal.ops import drain, maintenance, runs
from portal.ops.tables import ops_runs
from portal.settings import Settings
from portal.timeparse import stamp


def report(cfg: Settings) -> dict[str, Any]:
    windows = {w.host: w for w in maintenance.open_windows(cfg)}
    drained = drain.drains(cfg)
    locked = runs.locks(cfg)
    comps: dict[str, list[dict[str, str]]] = {}
    for c in registry.list_components(cfg):
        comps.setdefault(c.host, []).append(
            {"name": c.name, "kind": c.kind, "desired": c.desired_state}
        )
    hosts = []
    for h in registry.list_hosts(cfg):
        w, d = windows.get(h.name), drained.get(h.name)
        hosts.append(
            {
                "host": h.name,
                "role": h.role,
                "state": h.state,
                "maintenance": None
                if w is None
                else {
                    "by": w.actor,
                    "why": w.reason,
                    "until": stamp(w.ends_at),
                    "silence": w.silence_id,
                },
                "drained": None
                if d is None
                else {
                    "by": d["actor"],
                    "why": d["reason"],
                    "since": stamp(d["since"]),
                    "forced": d["forced"],
                },
                "locked_by_run": locked.get(h.name),
                "components": comps.get(h.name, []),
            }
        )
    with get_engine(cfg.database_url).connect() as conn:
        active = conn.execute(
            sa.select(ops_runs.c.id, ops_runs.c.action, ops_runs.c.hosts, ops_runs.c.state)
            .where(ops_runs.c.state.in_(("queued", "running")))
            .order_by(ops_runs.c.id)
        ).all()
    return {
        "workers": runs.workers_alive(cfg),
        "hosts": hosts,
        "active_runs": [
            {"id": r.id, "action": r.action, "hosts": list(r.hosts), "state": r.state}
            for r in active
        ],
    }
