"""Health gates: is a component or a host's collector back, per its liveness metric in
Prometheus, scraped after a given moment (a sample from before a restart proves nothing)?

A component serving its own ``/metrics`` (a ``metrics_port``) is back when its scrape target's
``up`` is 1; one without is back when the host collector's ``obs_process_up`` for it is 1.
A host's collector is back when ``up{job="collectors", component=""}`` is 1. All three read
``timestamp(...)`` so only samples newer than ``since`` count. ``firing`` lists the alerts of a
host (and component) firing now, for gates that also wait for quiet; given ``evaluated_after``, it
ignores alerts last evaluated before then (on the previous version's samples), and
``rules_evaluated_after`` tells when every rule group has looked at the new samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from portal.db.engine import get_engine
from portal.db.tables import components
from portal.errors import PortalError
from portal.metrics.client import Prometheus, label_value
from portal.settings import Settings


@dataclass(frozen=True)
class Verdict:
    """Whether the thing is back, and what was seen (for the step's detail)."""

    ok: bool
    seen: str
    #: the newest sample's time (Unix seconds), 0 when none was found
    at: float = 0.0


def _newer(cfg: Settings, promql: str, since: datetime) -> Verdict:
    """``promql`` (a vector of 1s) has a sample scraped after ``since``."""
    try:
        # timestamp() gives a sample's own time only when applied to a plain selector
        query = f"timestamp({promql}) and ({promql} == 1)"
        found = Prometheus(cfg.prometheus_url, timeout=5).query(query)
    except PortalError as exc:
        return Verdict(False, str(exc))
    stamps = [float(s["value"][1]) for s in found]
    if not stamps:
        return Verdict(False, "not up")
    newest = max(stamps)
    if newest <= since.timestamp():
        return Verdict(False, "no scrape since the restart yet", newest)
    return Verdict(True, "up", newest)


def metrics_port(cfg: Settings, host: str, component: str) -> int | None:
    with get_engine(cfg.database_url).connect() as conn:
        port = conn.execute(
            sa.select(components.c.metrics_port).where(
                components.c.host == host, components.c.name == component
            )
        ).scalar()
    return int(port) if port else None


def component_up(cfg: Settings, host: str, component: str, since: datetime) -> Verdict:
    """Is ``component`` on ``host`` up, per a sample taken after ``since``?"""
    h, c = label_value(host), label_value(component)
    if metrics_port(cfg, host, component) is not None:
        return _newer(cfg, f'up{{job="collectors", host={h}, component={c}}}', since)
    return _newer(cfg, f"obs_process_up{{host={h}, component={c}}}", since)


def collector_up(cfg: Settings, host: str, since: datetime) -> Verdict:
    """Is ``host``'s collector scraped as up after ``since``?"""
    return _newer(cfg, f'up{{job="collectors", host={label_value(host)}, component=""}}', since)


def firing(
    cfg: Settings, host: str, component: str | None = None, evaluated_after: float = 0.0
) -> list[str]:
    """Names of the alerts firing now for ``host`` (and ``component``), per Prometheus; only
    those evaluated at or after ``evaluated_after`` (Unix seconds) when it is given."""
    match = f'alertstate="firing", host={label_value(host)}'
    if component:
        match += f", component={label_value(component)}"
    found = Prometheus(cfg.prometheus_url, timeout=5).query(f"timestamp(ALERTS{{{match}}})")
    return sorted(
        {
            s["metric"].get("alertname", "?")
            for s in found
            if float(s["value"][1]) >= evaluated_after
        }
    )


def rules_evaluated_after(cfg: Settings, when: float) -> bool:
    """Has every rule group been evaluated at or after ``when`` (Unix seconds)?"""
    groups = Prometheus(cfg.prometheus_url, timeout=5).rule_groups()
    for group in groups:
        last = datetime.fromisoformat(group.get("lastEvaluation") or "1970-01-01T00:00:00Z")
        if last.timestamp() < when:
            return False
    return True
