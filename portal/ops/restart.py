"""Restart a component on hosts, one host at a time, each followed by a health gate: the
component's liveness metric must say it is back (a sample newer than the restart) within
``PORTAL_OPS_GATE_SECONDS``; a host that fails the gate fails the action and the rest wait.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from portal.db.engine import get_engine
from portal.db.tables import components
from portal.errors import PortalError
from portal.ops import health
from portal.ops.context import RunContext
from portal.ops.runs import ActionFailed, Request

DEFAULT_GATE_S = 120.0


def unit(cfg: Any, host: str, component: str) -> str | None:
    """The component's service unit on ``host`` (label ``unit``, else its name); None when the
    inventory has no such component there."""
    with get_engine(cfg.database_url).connect() as conn:
        labels = conn.execute(
            sa.select(components.c.labels).where(
                components.c.host == host, components.c.name == component
            )
        ).first()
    if labels is None:
        return None
    return str((labels[0] or {}).get("unit") or component)


def check(req: Request) -> None:
    """Every host must run the component (per the inventory)."""
    name = req.params.get("component", "")
    if not name:
        raise PortalError("restart needs a component (--component NAME)")
    missing = [h for h in req.hosts if unit(req.cfg, h, name) is None]
    if missing:
        raise PortalError(f"component {name!r} is not in the inventory on {', '.join(missing)}")


def gate_seconds(ctx: RunContext) -> float:
    return float(ctx.cfg.extra.get("PORTAL_OPS_GATE_SECONDS") or DEFAULT_GATE_S)


def gate(ctx: RunContext, host: str, component: str, since: datetime) -> None:
    """Wait until ``component`` on ``host`` is back after ``since``, or fail the action."""
    limit = gate_seconds(ctx)
    with ctx.step("health gate", host, f"{component} up within {limit:g} s") as step:
        if ctx.dry_run:
            step.skip("dry run: not waited")
            return
        seen: list[str] = []

        def back() -> bool:
            verdict = health.component_up(ctx.cfg, host, component, since)
            seen.append(verdict.seen)
            return verdict.ok

        if not ctx.wait_until(back, limit, interval=0.5):
            last = seen[-1] if seen else "not checked"
            raise ActionFailed(f"{host}: {component} did not come back within {limit:g} s ({last})")
        step.note("back")


def run(ctx: RunContext) -> dict[str, Any]:
    component = ctx.params["component"]
    for host in ctx.hosts:
        name = unit(ctx.cfg, host, component)
        if name is None:
            raise ActionFailed(f"{host}: component {component!r} is no longer in the inventory")
        status = ctx.command(host, "status", unit=name, check=False, step="status before")
        ctx.before[host] = {component: status.stdout.strip() or f"exit {status.exit_status}"}
        ctx.command(host, "restart", unit=name)
        gate(ctx, host, component, datetime.now(UTC))  # a scrape from before proves nothing
        ctx.after[host] = {component: "back" if not ctx.dry_run else "not run (dry run)"}
    return {}
