"""Power-outage recovery: the cluster brought back tier by tier (database -> storage ->
real-time -> batch -> portal), each tier whole before the next starts.

Per host of a tier (side by side): ``wake`` (IPMI / Wake-on-LAN, on the worker's machine),
SSH answers (``alive``), every component desired ``running`` started (``start``), then the
health check: its collector and those components up in samples scraped after the wake. A host
that does not come back is reported, not retried; the next tier still starts.

What is done is saved in the run's progress after each host, so the action is resumable: a
worker killed mid-way (even ``kill -9``) has its run queued again and the next worker goes on
where it stopped. The report (what came back, what did not, how long each tier took) is the
run's ``after`` and its progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from portal.errors import PortalError
from portal.inventory import registry
from portal.ops import health, templates
from portal.ops.context import Cancelled, RunContext
from portal.ops.restart import gate_seconds
from portal.ops.runs import ActionFailed, Request
from portal.settings import Settings
from portal.timeparse import from_stamp, stamp

TIERS = ("database", "storage", "real-time", "batch", "portal")
#: A host's role -> its tier (a host label ``tier`` wins; other roles go by their components).
ROLE_TIERS = {
    "database": "database",
    "db": "database",
    "storage": "storage",
    "batch": "batch",
    "head": "portal",
    "portal": "portal",
    "web": "portal",
}
TIER_LABEL = "tier"
WAKE_ARGS = ("mac", "bmc")  # host labels the wake template may use (besides host, address)
_lock = threading.Lock()


def tier_of(host: registry.Host, kinds: set[str]) -> str:
    """Label ``tier``, else the role's tier, else real-time when it runs a real-time component."""
    label = str((host.labels or {}).get(TIER_LABEL) or "")
    if label in TIERS:
        return label
    if host.role in ROLE_TIERS:
        return ROLE_TIERS[host.role]
    return "real-time" if "real-time" in kinds else "batch"


def default_hosts(cfg: Settings) -> list[str]:
    """Every inventory host not retired (``portal ops recover`` without hosts)."""
    return [h.name for h in registry.list_hosts(cfg) if h.state != "retired"]


def plan(cfg: Settings, names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``[(tier, hosts), ...]`` in tier order, only tiers with hosts."""
    wanted = set(names)
    kinds: dict[str, set[str]] = {}
    for c in registry.list_components(cfg):
        kinds.setdefault(c.host, set()).add(c.kind)
    by_tier: dict[str, list[str]] = {}
    for h in registry.list_hosts(cfg):
        if h.name in wanted:
            by_tier.setdefault(tier_of(h, kinds.get(h.name, set())), []).append(h.name)
    return [(t, by_tier[t]) for t in TIERS if t in by_tier]


def check(req: Request) -> None:
    if not (req.hosts or default_hosts(req.cfg)):
        raise PortalError("recover: the inventory holds no host to bring back")


# -- one host --------------------------------------------------------------------------------------
def _wake(ctx: RunContext, host: registry.Host) -> None:
    verb = ctx.verbs.get("wake")
    args: dict[str, Any] = {k: str(host.labels[k]) for k in WAKE_ARGS if host.labels.get(k)}
    args["address"] = host.address
    missing = [] if verb is None else [p for p in verb.placeholders if p not in {"host", *args}]
    if verb is None or missing:
        with ctx.step("wake", host.name) as step:
            why = "no wake command" if verb is None else f"no {', '.join(missing)} label"
            step.skip(f"{why}: not woken, waiting for it to answer")
        return
    ctx.command(host.name, "wake", **args)


def _answers(ctx: RunContext, host: str, limit: float) -> None:
    with ctx.step("ssh back", host, f"within {limit:g} s") as step:
        if ctx.dry_run:
            step.skip("dry run: not waited")
            return
        probe = templates.render(ctx.verbs["alive"], {"host": host})

        def answers() -> bool:
            try:
                return ctx.executor.run(ctx.target(host), probe, timeout=5).ok
            except PortalError:
                return False

        if not ctx.wait_until(answers, limit):
            raise ActionFailed(f"{host}: SSH did not answer within {limit:g} s")


def _healthy(ctx: RunContext, host: str, names: list[str], since: datetime, limit: float) -> None:
    what = f"collector{''.join(', ' + n for n in names)} up within {limit:g} s"
    with ctx.step("health", host, what) as step:
        if ctx.dry_run:
            step.skip("dry run: not checked")
            return
        seen: list[str] = []

        def up() -> bool:
            verdict = health.collector_up(ctx.cfg, host, since)
            if not verdict.ok:
                seen.append(f"collector: {verdict.seen}")
                return False
            for name in names:
                verdict = health.component_up(ctx.cfg, host, name, since)
                if not verdict.ok:
                    seen.append(f"{name}: {verdict.seen}")
                    return False
            return True

        if not ctx.wait_until(up, limit):
            raise ActionFailed(f"{host}: not healthy within {limit:g} s ({seen[-1]})")
        step.note("back")


def _record(ctx: RunContext, host: str, value: dict[str, Any]) -> None:
    with _lock:
        done = dict(ctx.progress.get("hosts") or {})
        done[host] = value
        if not ctx.dry_run:
            ctx.save_progress(hosts=done)
        else:
            ctx.progress["hosts"] = done


def recover_host(ctx: RunContext, host: registry.Host, tier: str) -> None:
    """Wake, wait for SSH, start its components, check health; the outcome is saved, a
    failure is reported (not raised) so the tier goes on."""
    started = time.monotonic()
    since = datetime.now(UTC)
    limit = gate_seconds(ctx)
    comps = [
        c for c in registry.list_components(ctx.cfg, host.name) if c.desired_state == "running"
    ]
    try:
        _wake(ctx, host)
        _answers(ctx, host.name, limit)
        for c in comps:
            unit = str((c.labels or {}).get("unit") or c.name)
            ctx.command(host.name, "start", unit=unit, step=f"start {c.name}")
        _healthy(ctx, host.name, [c.name for c in comps], since, limit)
        outcome = {"tier": tier, "back": True, "detail": "dry run" if ctx.dry_run else "back"}
    except Cancelled:
        raise
    except PortalError as exc:
        line = (str(exc).strip().splitlines() or ["failed"])[0].removeprefix(f"{host.name}: ")
        outcome = {"tier": tier, "back": False, "detail": line}
    outcome["seconds"] = round(time.monotonic() - started, 1)
    _record(ctx, host.name, outcome)


# -- the action ------------------------------------------------------------------------------------
def _tier_done(ctx: RunContext, tier: str, info: dict[str, Any]) -> None:
    tiers = dict(ctx.progress.get("tiers") or {})
    tiers[tier] = info
    if ctx.dry_run:
        ctx.progress["tiers"] = tiers
    else:
        ctx.save_progress(tiers=tiers)


def report(progress: dict[str, Any], order: Sequence[tuple[str, list[str]]]) -> dict[str, Any]:
    """Per tier: hosts back, hosts not back (with why), seconds; and every host not back."""
    hosts = progress.get("hosts") or {}
    tiers = progress.get("tiers") or {}
    rows = []
    missing: dict[str, str] = {}
    for tier, members in order:
        info = tiers.get(tier) or {}
        back = [h for h in members if (hosts.get(h) or {}).get("back")]
        lost = {h: (hosts.get(h) or {}).get("detail", "not reached") for h in members}
        lost = {h: why for h, why in lost.items() if h not in back}
        missing.update(lost)
        rows.append(
            {
                "tier": tier,
                "hosts": list(members),
                "back": back,
                "not_back": lost,
                "seconds": info.get("seconds"),
            }
        )
    return {"tiers": rows, "not_back": missing}


def run(ctx: RunContext) -> dict[str, Any]:
    """The ``recover`` action (see the module docstring); resumes from ``ctx.progress``."""
    names = list(ctx.hosts) or default_hosts(ctx.cfg)
    order = plan(ctx.cfg, names)
    known = {h.name: h for h in registry.list_hosts(ctx.cfg)}
    if ctx.run.attempts > 1 and not ctx.dry_run:
        done = sorted((ctx.progress.get("hosts") or {}).keys())
        with ctx.step("resume", "", f"attempt {ctx.run.attempts}") as step:
            step.note(f"already done: {', '.join(done) or 'nothing'}")
    for tier, members in order:
        info = dict((ctx.progress.get("tiers") or {}).get(tier) or {})
        if info.get("finished"):
            continue
        info.setdefault("started", stamp(datetime.now(UTC)))
        _tier_done(ctx, tier, info)
        todo = [h for h in members if h not in (ctx.progress.get("hosts") or {})]
        ctx.say(f"tier {tier}: {', '.join(members)}")
        ctx.parallel(lambda name, t=tier: recover_host(ctx, known[name], t), todo)  # type: ignore[misc]
        finished = datetime.now(UTC)
        info["finished"] = stamp(finished)
        info["seconds"] = round((finished - from_stamp(info["started"])).total_seconds(), 1)
        _tier_done(ctx, tier, info)
    found = report(ctx.progress, order)
    ctx.after.update(found)
    if found["not_back"]:
        lost = ", ".join(f"{h} ({why})" for h, why in found["not_back"].items())
        raise ActionFailed(f"recovery done, not back: {lost}")
    return {}
