"""Desired state: a component the inventory wants ``running`` that its liveness metric shows
down is restarted (a ``restart`` run, requested and audited as ``system:ops-desired-state``),
with back-off: 1, 2, 4, ... at most 30 minutes between attempts, reset once it is seen up.

Off unless ``PORTAL_OPS_DESIRED_STATE=true``. Hosts in maintenance, drained, retired or
declared down, and hosts busy with another run, are left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from portal.auth.identity import Identity
from portal.db.engine import get_engine
from portal.db.tables import components, hosts
from portal.errors import PortalError
from portal.metrics.client import Prometheus
from portal.ops import drain, runs
from portal.settings import Settings

WHO = Identity("ops-desired-state", "system", "operator")
FIRST_S, LONGEST_S = 60.0, 1800.0
DOWN_PROMQL = 'up{job="collectors", component!=""} == 0 or obs_process_up == 0'


@dataclass
class Backoff:
    attempts: int = 0
    next_at: float = 0.0


_backoff: dict[tuple[str, str], Backoff] = {}


def found_down(cfg: Settings) -> set[tuple[str, str]]:
    """``(host, component)`` pairs whose liveness metric is 0 now."""
    found = Prometheus(cfg.prometheus_url, timeout=5).query(DOWN_PROMQL)
    return {
        (s["metric"].get("host", ""), s["metric"].get("component", ""))
        for s in found
        if s["metric"].get("host") and s["metric"].get("component")
    }


def wanted_running(cfg: Settings) -> set[tuple[str, str]]:
    """Components desired ``running`` on hosts declared up."""
    query = (
        sa.select(components.c.host, components.c.name)
        .select_from(components.join(hosts, components.c.host == hosts.c.name))
        .where(components.c.desired_state == "running", hosts.c.state == "up")
    )
    with get_engine(cfg.database_url).connect() as conn:
        return {(r.host, r.name) for r in conn.execute(query)}


def tick(cfg: Settings, now: float | None = None, only: set[str] | None = None) -> list[int]:
    """Request restarts for components found down while desired running (on hosts ``only``,
    when given); returns the run ids."""
    if not cfg.extra.get("PORTAL_OPS_DESIRED_STATE"):
        return []
    now = time.monotonic() if now is None else now
    down = found_down(cfg) & wanted_running(cfg)
    if only is not None:
        down = {(h, c) for h, c in down if h in only}
    for key in [k for k in _backoff if k not in down]:
        del _backoff[key]  # seen up (or no longer wanted): the next failure starts afresh
    if not down:
        return []
    busy = set(runs.locks(cfg)) | drain.drained_hosts(cfg.database_url)
    busy |= {h for r in runs.history(cfg, 200) if not r.finished for h in r.hosts}
    started: list[int] = []
    for host, component in sorted(down):
        state = _backoff.setdefault((host, component), Backoff())
        if host in busy or now < state.next_at:
            continue
        state.attempts += 1
        state.next_at = now + min(LONGEST_S, FIRST_S * 2 ** (state.attempts - 1))
        reason = f"desired state: running; found down (attempt {state.attempts})"
        try:
            started.append(
                runs.request(cfg, WHO, "restart", [host], {"component": component}, reason)
            )
        except PortalError:
            continue  # e.g. removed from the inventory meanwhile; tried again after back-off
        busy.add(host)
    return started
