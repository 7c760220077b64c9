"""Drain and undrain: a drained host takes no new batch work (the batch scheduler reads
``drained_hosts``). A host running real-time components is refused unless an admin forces it;
then those components are stopped (``stop`` verb, desired state ``stopped``) and undrain starts
them again. The dry run lists what would stop: components, their beams (component label
``beams``) and the pointings of those beams in the last hour (what an hour of drain loses).
Batch jobs already running finish where they are; with ``batch_wait`` the drain waits for them
(like ``kubectl drain --timeout``) and fails if some still run after that long.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from portal.auth.roles import at_least
from portal.db.engine import get_engine
from portal.db.tables import components, pointings
from portal.errors import PortalError
from portal.events import bus
from portal.ops import batch
from portal.ops.context import RunContext
from portal.ops.runs import ActionFailed, Forbidden, Request
from portal.ops.tables import ops_drains
from portal.settings import Settings
from portal.timeparse import parse_duration

REAL_TIME = "real-time"


def drained_hosts(database_url: str) -> set[str]:
    """Hosts that must get no new batch work (the scheduler's one question to operations)."""
    with get_engine(database_url).connect() as conn:
        return set(conn.execute(sa.select(ops_drains.c.host)).scalars())


def drains(cfg: Settings) -> dict[str, dict[str, Any]]:
    """Each drained host: who, why, since when, forced."""
    with get_engine(cfg.database_url).connect() as conn:
        return {
            r.host: {
                "actor": r.actor,
                "reason": r.reason,
                "since": r.drained_at,
                "forced": r.forced,
                "run": r.run_id,
            }
            for r in conn.execute(sa.select(ops_drains))
        }


def real_time(cfg: Settings, host: str) -> list[dict[str, Any]]:
    """The host's real-time components: name, unit, beams, desired state."""
    query = (
        sa.select(components.c.name, components.c.labels, components.c.desired_state)
        .where(components.c.host == host, components.c.kind == REAL_TIME)
        .order_by(components.c.name)
    )
    with get_engine(cfg.database_url).connect() as conn:
        rows = list(conn.execute(query))
    out = []
    for name, labels, desired in rows:
        beams = [
            int(b) for b in (labels or {}).get("beams", []) if str(b).isascii() and str(b).isdigit()
        ]
        out.append(
            {
                "name": name,
                "unit": (labels or {}).get("unit") or name,
                "beams": beams,
                "desired": desired,
            }
        )
    return out


def pointings_per_hour(cfg: Settings, beams: list[int]) -> int:
    """Pointings of ``beams`` stored in the last hour (what an hour without them loses)."""
    if not beams:
        return 0
    since = datetime.now(UTC) - timedelta(hours=1)
    with get_engine(cfg.database_url).connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    pointings.c.beam.in_(beams), pointings.c.time >= since
                )
            ).scalar_one()
        )


def check_drain(req: Request) -> None:
    """Real-time hosts need ``force`` from an admin; ``force`` itself needs an admin."""
    wait_seconds(req.params.get("batch_wait", ""))
    force = req.params.get("force") == "yes"
    if force and not at_least(req.who.role, "admin"):
        raise Forbidden(f"drain --force needs role admin; {req.who.label} has {req.who.role}")
    for host in req.hosts:
        rt = real_time(req.cfg, host)
        if rt and not force:
            names = ", ".join(c["name"] for c in rt)
            raise PortalError(
                f"{host} runs real-time components ({names}); an admin may drain it with force"
            )


def wait_seconds(raw: str) -> float:
    return parse_duration(raw, "batch_wait").total_seconds() if raw else 0.0


def wait_for_batch_work(ctx: RunContext, host: str, wait: float) -> None:
    """List the batch jobs still running on ``host``; with ``wait``, wait until none is left."""
    what = f"running jobs finish within {wait:g} s" if wait else "running jobs finish by themselves"
    with ctx.step("batch work", host, what) as step:
        try:
            jobs = batch.running(ctx.cfg, host)
        except PortalError as exc:
            if wait:
                raise ActionFailed(f"{host}: cannot tell whether batch work runs: {exc}") from None
            step.note(f"the batch system cannot tell: {exc}")
            return
        if jobs and wait and not ctx.dry_run:

            def finished() -> bool:
                jobs[:] = batch.running(ctx.cfg, host)
                return not jobs

            if not ctx.wait_until(finished, wait, interval=5.0):
                raise ActionFailed(
                    f"{host}: {len(jobs)} batch job(s) still running after {wait:g} s: "
                    + batch.describe(jobs)
                )
            step.note("every running batch job finished")
        elif jobs:
            step.note(f"{len(jobs)} still running, none will start: {batch.describe(jobs)}")
        else:
            step.note("no batch job running")


def run_drain(ctx: RunContext) -> dict[str, Any]:
    force = ctx.params.get("force") == "yes"
    wait = wait_seconds(ctx.params.get("batch_wait", ""))
    known = drains(ctx.cfg)
    for host in ctx.hosts:
        rt = real_time(ctx.cfg, host)
        ctx.before[host] = {
            "drained": host in known,
            "running": [c["name"] for c in rt if c["desired"] == "running"],
        }
        beams = sorted({b for c in rt for b in c["beams"]})
        lost = pointings_per_hour(ctx.cfg, beams)
        with ctx.step("plan", host) as step:
            step.note(
                "would stop: "
                + (", ".join(c["name"] for c in rt) if rt else "no real-time components")
                + (f"; beams {beams}; {lost} pointings/hour lost" if rt else "")
                + "; no new batch work"
            )
        for comp in rt if force else []:
            ctx.command(host, "stop", unit=comp["unit"], step=f"stop {comp['name']}")
            if not ctx.dry_run:
                _desired(ctx.cfg, host, comp["name"], "stopped")
        if ctx.dry_run:
            with ctx.step("drain", host, "no new batch work") as step:
                step.note("dry run: not recorded")
            wait_for_batch_work(ctx, host, wait)  # lists what is running, waits for nothing
            continue
        with ctx.step("drain", host, "no new batch work"):
            stmt = insert(ops_drains).values(
                host=host,
                actor=ctx.run.actor,
                reason=ctx.run.reason,
                drained_at=sa.func.now(),
                forced=force,
                run_id=ctx.run.id,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["host"],
                set_={
                    "actor": stmt.excluded.actor,
                    "reason": stmt.excluded.reason,
                    "forced": stmt.excluded.forced,
                    "run_id": stmt.excluded.run_id,
                },
            )
            with get_engine(ctx.cfg.database_url).begin() as conn:
                conn.execute(stmt)
        wait_for_batch_work(ctx, host, wait)
        ctx.after[host] = {"drained": True, "stopped": [c["name"] for c in rt] if force else []}
        bus.publish(
            ctx.cfg.database_url,
            "ops.drained",
            {
                "host": host,
                "by": ctx.run.actor,
                "reason": ctx.run.reason,
                "forced": force,
                "run": ctx.run.id,
            },
            source="ops",
        )
    return {}


def run_undrain(ctx: RunContext) -> dict[str, Any]:
    known = drains(ctx.cfg)
    for host in ctx.hosts:
        rt = [c for c in real_time(ctx.cfg, host) if c["desired"] == "stopped"]
        ctx.before[host] = {"drained": host in known, "stopped": [c["name"] for c in rt]}
        if host not in known:
            with ctx.step("undrain", host) as step:
                step.skip("not drained")
            ctx.after[host] = ctx.before[host]
            continue
        for comp in rt if known[host]["forced"] else []:
            ctx.command(host, "start", unit=comp["unit"], step=f"start {comp['name']}")
            if not ctx.dry_run:
                _desired(ctx.cfg, host, comp["name"], "running")
        with ctx.step("undrain", host, "takes batch work again") as step:
            if ctx.dry_run:
                step.note("dry run: not recorded")
                continue
            with get_engine(ctx.cfg.database_url).begin() as conn:
                conn.execute(ops_drains.delete().where(ops_drains.c.host == host))
        ctx.after[host] = {"drained": False, "stopped": []}
        bus.publish(
            ctx.cfg.database_url,
            "ops.undrained",
            {"host": host, "by": ctx.run.actor, "reason": ctx.run.reason, "run": ctx.run.id},
            source="ops",
        )
    return {}


def _desired(cfg: Settings, host: str, name: str, state: str) -> None:
    with get_engine(cfg.database_url).begin() as conn:
        conn.execute(
            components.update()
            .where(components.c.host == host, components.c.name == name)
            .values(desired_state=state)
        )
