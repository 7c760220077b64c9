"""Maintenance windows: a host's alerts silenced in Alertmanager (matcher ``host=<name>``, who,
why) until an end time, and its inventory state ``maintenance`` meanwhile.

``run`` is the ``maintenance`` action (``mode`` on/off, ``until`` a duration from now or a
time). ``tick`` (called by the ops worker every few seconds) announces windows that end soon
(event ``ops.maintenance.ending``) and ends expired ones (silence expired, host state restored,
event ``ops.maintenance.expired``, audit entry).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from portal.alerts import alertmanager
from portal.auth import audit
from portal.auth.identity import Identity
from portal.db.engine import get_engine
from portal.db.tables import hosts
from portal.errors import PortalError
from portal.events import bus
from portal.inventory import registry
from portal.ops.context import RunContext
from portal.ops.runs import ActionFailed, Request
from portal.ops.tables import ops_maintenance
from portal.settings import Settings
from portal.timeparse import parse_duration, parse_time, stamp

log = logging.getLogger(__name__)
LONGEST = timedelta(days=31)
WARN_BEFORE = timedelta(minutes=10)  # "ends soon" is announced this long before the end
WORKER = Identity("ops-worker", "system", "operator")


@dataclass(frozen=True)
class Window:
    id: int
    host: str
    actor: str
    reason: str
    starts_at: datetime
    ends_at: datetime
    silence_id: str
    previous_state: str
    run_id: int | None
    warned: bool = False  # "ends soon" announced

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["starts_at"], out["ends_at"] = stamp(self.starts_at), stamp(self.ends_at)
        return out


def end_time(raw: str, now: datetime | None = None) -> datetime:
    """``until``: a duration from now (``2h``) or a time; in the future, at most 31 days away."""
    now = now or datetime.now(UTC)
    if not raw:
        raise PortalError("maintenance on needs an end time (--until 2h, or a time)")
    try:
        when = now + parse_duration(raw, "until")
    except PortalError:
        when = parse_time(raw, "until", now)
    if when <= now:
        raise PortalError(f"until {raw!r} is not in the future")
    if when - now > LONGEST:
        raise PortalError(f"until {raw!r} is more than {LONGEST.days} days away")
    return when


def open_windows(cfg: Settings, host: str | None = None) -> list[Window]:
    """Maintenance windows not ended yet, soonest end first."""
    t = ops_maintenance
    query = (
        sa.select(
            t.c.id,
            t.c.host,
            t.c.actor,
            t.c.reason,
            t.c.starts_at,
            t.c.ends_at,
            t.c.silence_id,
            t.c.previous_state,
            t.c.run_id,
            t.c.warned_at.is_not(None),
        )
        .where(t.c.ended_at.is_(None))
        .order_by(t.c.ends_at, t.c.host)
    )
    if host is not None:
        query = query.where(t.c.host == host)
    with get_engine(cfg.database_url).connect() as conn:
        return [Window(*row) for row in conn.execute(query)]


def check(req: Request) -> None:
    """Refuse before queueing: ``on`` without a valid end time."""
    if req.params.get("mode", "on") == "on":
        end_time(req.params.get("until", ""))
    elif req.params.get("until"):
        raise PortalError("maintenance off takes no end time")


def _declared(cfg: Settings, host: str) -> str:
    with get_engine(cfg.database_url).connect() as conn:
        return str(conn.execute(sa.select(hosts.c.state).where(hosts.c.name == host)).scalar())


def run(ctx: RunContext) -> dict[str, Any]:
    if ctx.params.get("mode", "on") == "on":
        until = end_time(ctx.params.get("until", ""))
        for host in ctx.hosts:
            _start(ctx, host, until)
    else:
        for host in ctx.hosts:
            _end(ctx, host)
    return {}


def _start(ctx: RunContext, host: str, until: datetime) -> None:
    cfg = ctx.cfg
    current = open_windows(cfg, host)
    declared = _declared(cfg, host)
    ctx.before[host] = {
        "state": declared,
        "maintenance_until": stamp(current[0].ends_at) if current else None,
    }
    comment = f"maintenance: {ctx.run.reason} (ops run {ctx.run.id})"
    with ctx.step("silence", host, f"host={host} until {stamp(until)}") as step:
        if ctx.dry_run:
            step.note("dry run: no silence created")
            silence_id = ""
        else:
            try:
                silence_id = alertmanager.create_silence(
                    cfg.alertmanager_url,
                    [alertmanager.Matcher("host", host)],
                    until,
                    ctx.run.actor,
                    comment,
                )
            except PortalError as exc:
                raise ActionFailed(f"{host}: {exc}") from None
            step.note(f"silence {silence_id}")
    with ctx.step("inventory", host, "state maintenance") as step:
        if ctx.dry_run:
            step.note(f"dry run: state stays {declared}")
            return
        previous = current[0].previous_state if current else declared
        with get_engine(cfg.database_url).begin() as conn:
            if current:  # extend or shorten: the new silence replaces the old one
                conn.execute(
                    ops_maintenance.update()
                    .where(ops_maintenance.c.id == current[0].id)
                    .values(ended_at=sa.func.now(), ended_by=f"replaced by run {ctx.run.id}")
                )
            conn.execute(
                sa.insert(ops_maintenance).values(
                    host=host,
                    actor=ctx.run.actor,
                    reason=ctx.run.reason,
                    starts_at=sa.func.now(),
                    ends_at=until,
                    silence_id=silence_id,
                    previous_state=previous if previous != "maintenance" else "up",
                    run_id=ctx.run.id,
                )
            )
        if current and current[0].silence_id:
            alertmanager.expire_silence(cfg.alertmanager_url, current[0].silence_id)
        if current and current[0].warned:
            notify_ending(cfg, current[0], ended=True)
        if declared != "maintenance":
            registry.set_host_state(cfg, host, "maintenance")
    ctx.after[host] = {
        "state": "maintenance",
        "maintenance_until": stamp(until),
        "silence": silence_id,
    }
    bus.publish(
        cfg.database_url,
        "ops.maintenance.started",
        {
            "host": host,
            "until": stamp(until),
            "by": ctx.run.actor,
            "reason": ctx.run.reason,
            "silence": silence_id,
            "run": ctx.run.id,
        },
        source="ops",
    )


def _end(ctx: RunContext, host: str) -> None:
    cfg = ctx.cfg
    current = open_windows(cfg, host)
    declared = _declared(cfg, host)
    ctx.before[host] = {
        "state": declared,
        "maintenance_until": stamp(current[0].ends_at) if current else None,
    }
    if not current:
        with ctx.step("silence", host) as step:
            step.skip("not in maintenance")
        ctx.after[host] = ctx.before[host]
        return
    window = current[0]
    with ctx.step("silence", host, f"expire {window.silence_id or '-'}") as step:
        if ctx.dry_run:
            step.note("dry run: silence kept")
        elif window.silence_id:
            try:
                gone = alertmanager.expire_silence(cfg.alertmanager_url, window.silence_id)
            except PortalError as exc:
                raise ActionFailed(f"{host}: {exc}") from None
            step.note("expired" if gone else "already gone")
    with ctx.step("inventory", host, f"state {window.previous_state}") as step:
        if ctx.dry_run:
            step.note("dry run: state stays maintenance")
            return
        _close(cfg, window, ended_by=ctx.run.actor)
        if window.warned:
            notify_ending(cfg, window, ended=True)
    ctx.after[host] = {"state": window.previous_state, "maintenance_until": None}
    bus.publish(
        cfg.database_url,
        "ops.maintenance.ended",
        {"host": host, "by": ctx.run.actor, "reason": ctx.run.reason, "run": ctx.run.id},
        source="ops",
    )


def _close(cfg: Settings, window: Window, ended_by: str) -> bool:
    """Mark the window ended (once: False when someone else ended it first), restore the
    inventory state the host had before."""
    with get_engine(cfg.database_url).begin() as conn:
        done = conn.execute(
            ops_maintenance.update()
            .where(ops_maintenance.c.id == window.id, ops_maintenance.c.ended_at.is_(None))
            .values(ended_at=sa.func.now(), ended_by=ended_by)
        ).rowcount
    if done and _declared(cfg, window.host) == "maintenance":
        registry.set_host_state(cfg, window.host, window.previous_state)
    return bool(done)


def notify_ending(cfg: Settings, window: Window, ended: bool = False) -> None:
    """Tell people through Alertmanager (the route every alert takes), as alert
    ``MaintenanceEnding``; labelled ``maintenance_host``, not ``host``, so the window's own
    silence does not mute it. It resolves at the window's end (``ended``: now)."""
    try:
        alertmanager.post_alert(
            cfg.alertmanager_url,
            {
                "alertname": "MaintenanceEnding",
                "maintenance_host": window.host,
                "severity": "warning",
            },
            {
                "summary": f"Maintenance of {window.host} ends at {stamp(window.ends_at)}",
                "description": f"Set by {window.actor}: {window.reason}. Extend it with "
                f"`portal ops maintenance on {window.host} --until ...`, or let it end.",
            },
            datetime.now(UTC) if ended else window.ends_at,
        )
    except PortalError as exc:  # the event is the record; a notification is a courtesy
        log.warning("maintenance of %s: Alertmanager not told (%s)", window.host, exc)


def tick(cfg: Settings, now: datetime | None = None) -> list[str]:
    """Announce windows ending within ``WARN_BEFORE``; end the expired ones. Returns the hosts
    whose window ended."""
    now = now or datetime.now(UTC)
    ended: list[str] = []
    for window in open_windows(cfg):
        if window.ends_at <= now:
            if window.silence_id:
                with contextlib.suppress(PortalError):  # it expires by itself anyway
                    alertmanager.expire_silence(cfg.alertmanager_url, window.silence_id)
            if not _close(cfg, window, ended_by="expired"):
                continue
            ended.append(window.host)
            audit.record(
                cfg.database_url,
                WORKER,
                audit.Entry(
                    "ops.maintenance.expired",
                    window.host,
                    params={"window": window.id, "run": window.run_id},
                    reason=window.reason,
                    before={"state": "maintenance", "maintenance_until": stamp(window.ends_at)},
                    after={"state": window.previous_state, "maintenance_until": None},
                ),
            )
            bus.publish(
                cfg.database_url,
                "ops.maintenance.expired",
                {
                    "host": window.host,
                    "until": stamp(window.ends_at),
                    "by": window.actor,
                    "reason": window.reason,
                },
                source="ops",
            )
        elif window.ends_at - now <= WARN_BEFORE:
            with get_engine(cfg.database_url).begin() as conn:
                first = conn.execute(
                    ops_maintenance.update()
                    .where(ops_maintenance.c.id == window.id, ops_maintenance.c.warned_at.is_(None))
                    .values(warned_at=sa.func.now())
                ).rowcount
            if first:
                bus.publish(
                    cfg.database_url,
                    "ops.maintenance.ending",
                    {
                        "host": window.host,
                        "until": stamp(window.ends_at),
                        "by": window.actor,
                        "reason": window.reason,
                    },
                    source="ops",
                )
                notify_ending(cfg, window)
    return ended
