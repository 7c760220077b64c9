"""Rolling update of a component to a version across hosts, a batch at a time; each batch passes
a health gate before the next starts, and the first failure stops the rollout.

Per host: ``version`` (the version it runs now, saved in the run's progress before anything
changes) and ``update`` (without a version: only ``restart``, a rolling restart), then the gate:
the host's collector and the component are up in samples scraped after the update, and then,
for the settle time, the component stays up and none of its alerts fire. ``rollback`` restores
the saved versions of an update run on the hosts it changed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from portal.auth.roles import at_least
from portal.db.engine import get_engine
from portal.db.tables import components
from portal.errors import PortalError
from portal.ops import health, runs
from portal.ops.context import Cancelled, RunContext
from portal.ops.restart import gate_seconds, unit
from portal.ops.runs import ActionFailed, Forbidden, Request
from portal.ops.templates import PATTERNS
from portal.timeparse import parse_duration

DEFAULT_SETTLE = "30s"
MAX_SIDE_BY_SIDE = 32  # hosts of one batch acted on at the same moment
VERSION_LABEL = "version"  # the component's inventory label the fleet table shows
_lock = threading.Lock()


# -- planning --------------------------------------------------------------------------------------
def batch_size(batch: str, hosts: int) -> int:
    """Hosts per batch: ``""`` or ``1`` one at a time, ``N``, or ``P%`` of them (at least 1)."""
    text = (batch or "1").strip()
    if text.endswith("%"):
        percent = int(text[:-1]) if text[:-1].isascii() and text[:-1].isdigit() else 0
        if not 1 <= percent <= 100:
            raise PortalError(f"batch {batch!r}: a percentage must be 1% to 100%")
        return max(1, math.ceil(hosts * percent / 100))
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise PortalError(f"batch {batch!r} must be 1, a number of hosts or a percentage (25%)")
    return int(text)


def plan(hosts: Sequence[str], batch: str) -> list[list[str]]:
    """The batches, in the order the hosts were given."""
    size = batch_size(batch, len(hosts))
    return [list(hosts[i : i + size]) for i in range(0, len(hosts), size)]


def settle_seconds(raw: str) -> float:
    return parse_duration(raw or DEFAULT_SETTLE, "settle").total_seconds()


def hosts_with(cfg: Any, component: str) -> list[str]:
    """Every inventory host the component is on (``portal ops update`` without hosts)."""
    query = sa.select(components.c.host).where(components.c.name == component)
    with get_engine(cfg.database_url).connect() as conn:
        return sorted(conn.execute(query).scalars())


# -- the version the inventory shows ---------------------------------------------------------------
def record_version(cfg: Any, host: str, component: str, version: str) -> None:
    """Keep the component's running version in its inventory labels (the fleet table shows it)."""
    patch = sa.func.jsonb_build_object(VERSION_LABEL, version)
    with get_engine(cfg.database_url).begin() as conn:
        conn.execute(
            components.update()
            .where(components.c.host == host, components.c.name == component)
            .values(labels=components.c.labels.op("||")(patch))
        )


def _save(ctx: RunContext, key: str, host: str, value: Any) -> None:
    """``progress[key][host] = value``, persisted at once (batches run in threads)."""
    with _lock:
        found = dict(ctx.progress.get(key) or {})
        found[host] = value
        ctx.save_progress(**{key: found})


# -- the health gate -------------------------------------------------------------------------------
def gate(ctx: RunContext, host: str, component: str, since: datetime, settle: float) -> None:
    """Collector and component up after ``since`` within the gate deadline, then ``settle``
    seconds with the component up and none of its alerts firing; else the action fails.

    Alerts count from the first rule evaluation on the fresh samples (an alert of the previous
    version still shown before that proves nothing), and the settle time lasts at least until
    every rule group has evaluated them once."""
    limit = gate_seconds(ctx)
    what = f"collector and {component} up within {limit:g} s, then quiet for {settle:g} s"
    with ctx.step("health gate", host, what) as step:
        if ctx.dry_run:
            step.skip("dry run: not waited")
            return
        seen: list[str] = []
        fresh = 0.0

        def up() -> bool:
            nonlocal fresh
            for name, verdict in (
                ("collector", health.collector_up(ctx.cfg, host, since)),
                (component, health.component_up(ctx.cfg, host, component, since)),
            ):
                if not verdict.ok:
                    seen.append(f"{name}: {verdict.seen}")
                    return False
                fresh = max(fresh, verdict.at)
            return True

        if not ctx.wait_until(up, limit):
            last = seen[-1] if seen else "not checked"
            raise ActionFailed(f"{host}: not healthy within {limit:g} s ({last})")
        start = time.monotonic()
        while True:
            alerts = health.firing(ctx.cfg, host, component, evaluated_after=fresh)
            if alerts:
                raise ActionFailed(f"{host}: {', '.join(alerts)} firing during the settle time")
            verdict = health.component_up(ctx.cfg, host, component, since)
            if not verdict.ok:
                raise ActionFailed(f"{host}: {component} went down during the settle time")
            waited = time.monotonic() - start
            if waited >= settle and health.rules_evaluated_after(ctx.cfg, fresh):
                break
            if waited >= settle + limit:
                raise ActionFailed(f"{host}: alert rules not evaluated within {limit:g} s")
            ctx.check_cancelled()
            time.sleep(min(1.0, max(0.2, settle - waited)))
        step.note(f"up, quiet for {settle:g} s")


# -- update ----------------------------------------------------------------------------------------
def check_update(req: Request) -> None:
    """Refuse before queueing: component on every host, a valid batch and settle time; only an
    admin skips the health gate."""
    component = req.params.get("component", "")
    missing = [h for h in req.hosts if unit(req.cfg, h, component) is None]
    if missing:
        raise PortalError(
            f"component {component!r} is not in the inventory on {', '.join(missing)}"
        )
    batch_size(req.params.get("batch", ""), len(req.hosts))
    settle_seconds(req.params.get("settle", ""))
    if req.params.get("gate") == "no" and not at_least(req.who.role, "admin"):
        raise Forbidden(f"update --gate no needs role admin; {req.who.label} has {req.who.role}")


def _current_version(ctx: RunContext, host: str, name: str) -> str:
    """What the host runs now (the ``version`` verb's last line of output)."""
    result = ctx.command(host, "version", unit=name, step="version before")
    if ctx.dry_run:
        return "unknown (dry run)"
    lines = result.stdout.strip().splitlines()
    found = lines[-1].strip() if lines else ""
    if not PATTERNS["version"].match(found):
        raise ActionFailed(f"{host}: cannot read the version of {name} (got {found[:60]!r})")
    return found


def _update_host(ctx: RunContext, host: str, component: str, version: str) -> datetime:
    """Save the version the host runs, then update (or restart) it; returns when that ended."""
    name = unit(ctx.cfg, host, component)
    if name is None:
        raise ActionFailed(f"{host}: component {component!r} is no longer in the inventory")
    if not version:  # a rolling restart: versions do not change, nothing to restore later
        ctx.before[host] = {"component": component}
        ctx.command(host, "restart", unit=name)
        return datetime.now(UTC)
    previous = _current_version(ctx, host, name)
    ctx.before[host] = {"component": component, "version": previous}
    if not ctx.dry_run:
        _save(ctx, "previous", host, previous)
    ctx.command(host, "update", unit=name, version=version)
    return datetime.now(UTC)  # a scrape from before the command ended proves nothing


def _after_gate(ctx: RunContext, host: str, component: str, version: str) -> None:
    if ctx.dry_run:
        ctx.after[host] = {"component": component, "version": version or "restarted (dry run)"}
        return
    if version:
        record_version(ctx.cfg, host, component, version)
    ctx.after[host] = {"component": component, "version": version or "restarted"}
    _save(ctx, "done", host, version or "restarted")


def run_update(ctx: RunContext) -> dict[str, Any]:
    """The ``update`` action (see the module docstring)."""
    component, version = ctx.params["component"], ctx.params.get("version", "")
    settle = settle_seconds(ctx.params.get("settle", ""))
    gated = ctx.params.get("gate") != "no"
    batches = plan(ctx.hosts, ctx.params.get("batch", ""))
    if not ctx.dry_run:
        ctx.save_progress(batches=batches)
    for index, batch in enumerate(batches, start=1):
        ctx.say(f"batch {index}/{len(batches)}: {', '.join(batch)}")

        def one(host: str) -> None:
            since = _update_host(ctx, host, component, version)
            if gated:
                gate(ctx, host, component, since, settle)
            _after_gate(ctx, host, component, version)

        try:
            ctx.parallel(one, batch, width=min(len(batch), MAX_SIDE_BY_SIDE))
        except Cancelled:
            raise
        except PortalError as exc:
            left = [h for later in batches[index:] for h in later]
            if not ctx.dry_run:
                ctx.save_progress(stopped_at=index, untouched=left)
            untouched = f"; not touched: {', '.join(left)}" if left else ""
            raise ActionFailed(f"batch {index}/{len(batches)} failed: {exc}{untouched}") from None
    return {"batches": batches}


# -- rollback --------------------------------------------------------------------------------------
def rollback_plan(cfg: Any, run_id: int) -> tuple[runs.Run, dict[str, str]]:
    """The update run and the versions its hosts ran before it; one clear error when there is
    nothing to roll back."""
    run = runs.get(cfg, run_id)
    if run.action != "update":
        raise PortalError(f"run {run_id} is a {run.action} run, not an update")
    if run.dry_run:
        raise PortalError(f"run {run_id} was a dry run: it changed nothing")
    if not run.finished:
        raise PortalError(f"run {run_id} is still {run.state}: cancel it first (portal ops cancel)")
    if not run.params.get("version"):
        raise PortalError(f"run {run_id} was a rolling restart: there is no version to restore")
    previous = {str(h): str(v) for h, v in (run.progress.get("previous") or {}).items()}
    if not previous:
        raise PortalError(f"run {run_id} changed no host: nothing to roll back")
    return run, previous


def rollback_hosts(cfg: Any, run_id: int) -> list[str]:
    """The hosts an update run changed, in its order (what ``rollback`` takes by default)."""
    run, previous = rollback_plan(cfg, run_id)
    return [h for h in run.hosts if h in previous]


def check_rollback(req: Request) -> None:
    _run, previous = rollback_plan(req.cfg, int(req.params["run"]))
    other = [h for h in req.hosts if h not in previous]
    if other:
        raise PortalError(
            f"run {req.params['run']} did not change {', '.join(other)} "
            f"(it changed: {', '.join(previous)})"
        )
    settle_seconds(req.params.get("settle", ""))


def run_rollback(ctx: RunContext) -> dict[str, Any]:
    """Host by host, back to the version it ran before the update; every host is tried, and
    the run fails at the end when any did not come back healthy."""
    update, previous = rollback_plan(ctx.cfg, int(ctx.params["run"]))
    component = str(update.params["component"])
    settle = settle_seconds(ctx.params.get("settle", ""))
    failed: list[str] = []
    for host in ctx.hosts:
        version = previous[host]
        try:
            name = unit(ctx.cfg, host, component)
            if name is None:
                raise ActionFailed(f"{host}: component {component!r} is no longer in the inventory")
            ctx.before[host] = {
                "component": component,
                "version": _current_version(ctx, host, name),
            }
            ctx.command(host, "update", unit=name, version=version)
            gate(ctx, host, component, datetime.now(UTC), settle)
        except Cancelled:
            raise
        except PortalError as exc:
            failed.append(str(exc).splitlines()[0])
            continue
        if not ctx.dry_run:
            record_version(ctx.cfg, host, component, version)
        ctx.after[host] = {"component": component, "version": version}
    if failed:
        raise ActionFailed(f"rollback incomplete: {'; '.join(failed)}")
    return {"update_run": update.id, "restored": {h: previous[h] for h in ctx.hosts}}
