"""Reboot a host: only one in maintenance or drained, and running no batch job (an admin may
force it); then wait until SSH answers again and its collector is scraped as up, and report how
long it took.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from portal.auth.roles import at_least
from portal.errors import PortalError
from portal.inventory import registry
from portal.ops import batch, health, templates
from portal.ops.context import RunContext
from portal.ops.drain import drained_hosts
from portal.ops.restart import gate_seconds
from portal.ops.runs import ActionFailed, Forbidden, Request


def check(req: Request) -> None:
    force = req.params.get("force") == "yes"
    if force and not at_least(req.who.role, "admin"):
        raise Forbidden(f"reboot --force needs role admin; {req.who.label} has {req.who.role}")
    drained = drained_hosts(req.cfg.database_url)
    for host in req.hosts:
        found = registry.get_host(req.cfg, host)
        safe = host in drained or (found is not None and found.state == "maintenance")
        if not safe and not force:
            raise PortalError(
                f"{host} is neither in maintenance nor drained: put it in maintenance first "
                "(or an admin forces the reboot)"
            )


def no_batch_work(ctx: RunContext, host: str) -> None:
    """A reboot kills the batch jobs running there: refuse unless forced (drain with
    ``batch_wait`` first); a batch system that cannot tell is noted, not a refusal."""
    with ctx.step("batch work", host, "none running") as step:
        try:
            jobs = batch.running(ctx.cfg, host)
        except PortalError as exc:
            step.note(f"the batch system cannot tell: {exc}")
            return
        if not jobs:
            step.note("no batch job running")
        elif ctx.params.get("force") == "yes":
            step.note(f"forced: {len(jobs)} batch job(s) will be killed: {batch.describe(jobs)}")
        else:
            raise ActionFailed(
                f"{host}: {len(jobs)} batch job(s) still running ({batch.describe(jobs)}); "
                "drain it with --batch-wait first, or an admin forces the reboot"
            )


def run(ctx: RunContext) -> dict[str, Any]:
    host = ctx.hosts[0]
    found = registry.get_host(ctx.cfg, host)
    ctx.before[host] = {"state": found.state if found else None}
    no_batch_work(ctx, host)
    started = time.monotonic()
    result = ctx.command(host, "reboot", check=False)
    since = datetime.now(UTC)  # only a scrape after the reboot command proves the collector
    if not result.ok and not result.lost:  # a reboot may well cut the connection
        raise ActionFailed(f"{host}: reboot failed ({result.summary()})")
    limit = gate_seconds(ctx)
    with ctx.step("ssh back", host, f"within {limit:g} s") as step:
        if ctx.dry_run:
            step.skip("dry run: not waited")
        else:
            probe = templates.render(ctx.verbs["alive"], {"host": host})

            def answers() -> bool:
                try:
                    return ctx.executor.run(ctx.target(host), probe, timeout=5).ok
                except PortalError:
                    return False

            if not ctx.wait_until(answers, limit):
                raise ActionFailed(f"{host}: SSH did not answer within {limit:g} s")
            step.note(f"after {time.monotonic() - started:.1f} s")
    with ctx.step("collector back", host, f"within {limit:g} s") as step:
        if ctx.dry_run:
            step.skip("dry run: not waited")
        else:
            seen: list[str] = []

            def collector() -> bool:
                verdict = health.collector_up(ctx.cfg, host, since)
                seen.append(verdict.seen)
                return verdict.ok

            if not ctx.wait_until(collector, limit):
                last = seen[-1] if seen else "not checked"
                raise ActionFailed(f"{host}: its collector is not back within {limit:g} s ({last})")
            step.note(f"after {time.monotonic() - started:.1f} s")
    ctx.after[host] = {
        "state": found.state if found else None,
        "back_after_s": round(time.monotonic() - started, 1),
    }
    return {}
