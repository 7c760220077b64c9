"""A host's state, one definition for every view: Overview, Hosts, a host's page, the CLI.

The state combines what an operator declared with whether the host's collector answers:

- declared ``maintenance`` or ``retired`` (or ``down``): that, whatever the collector does;
- otherwise the liveness of its collector: Prometheus' ``up`` of the host's collector target
  (``up{job="collectors", component=""}``): ``up`` (1), ``down`` (0), ``unknown`` (no such
  series yet, e.g. added seconds ago);
- when Prometheus does not answer, the time of the host collector's last sample in
  ``metric_samples`` (``obs_host_cpu_usage_ratio``): ``up`` when younger than ``STALE_AFTER``,
  ``down`` when older, ``unknown`` when the database holds none.

The same definition in PromQL (the targets carry the declared state as ``declared_state``)
is ``HOST_STATE_PROMQL``: 1 up, 0 down, 2 maintenance; a host without a series is unknown
(retired hosts are not scraped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from portal.db.engine import describe_unreachable, get_engine
from portal.db.tables import metric_samples
from portal.errors import DatabaseUnavailable, PortalError
from portal.inventory import registry
from portal.settings import Settings

#: Every state a host can be shown in.
STATES = ("up", "down", "maintenance", "unknown", "retired")
#: Declared states that win over liveness.
DECLARED_WINS = ("maintenance", "retired", "down")
#: The collector target of each host (component targets share the job, with a ``component``).
HOST_UP_PROMQL = 'up{job="collectors", component=""}'
#: The whole definition for Grafana: 1 up, 0 down, 2 maintenance; no series: unknown.
HOST_STATE_PROMQL = (
    'max by (host) (up{job="collectors", component="", declared_state!~"maintenance|down"})'
    ' or max by (host) (0 * up{job="collectors", component="", declared_state="down"})'
    ' or max by (host) (0 * up{job="collectors", component="", declared_state="maintenance"} + 2)'
)
#: The series every host collector writes each sampling: its newest row is "last seen".
HEARTBEAT_METRIC = "obs_host_cpu_usage_ratio"
#: Without Prometheus: a host whose newest sample is older than this is down.
STALE_AFTER = timedelta(seconds=90)


@dataclass(frozen=True)
class HostState:
    name: str
    role: str
    address: str
    collector_port: int
    declared: str  # what the inventory says (``portal hosts state``)
    state: str  # one of STATES
    last_seen: datetime | None = None  # newest database sample, when that was the source


@dataclass
class Liveness:
    hosts: list[HostState]
    source: str  # "prometheus" or "database"
    problem: PortalError | None = None  # why Prometheus was not the source
    counts: dict[str, int] = field(default_factory=dict)

    def by_name(self) -> dict[str, HostState]:
        return {h.name: h for h in self.hosts}

    def summary(self) -> str:
        """``3 up / 1 down``, then the other states that occur: ``/ 1 maintenance / ...``."""
        parts = [f"{self.counts.get('up', 0)} up", f"{self.counts.get('down', 0)} down"]
        parts += [f"{self.counts[s]} {s}" for s in STATES[2:] if self.counts.get(s)]
        return " / ".join(parts)


def combine(declared: str, live: str) -> str:
    """A declared maintenance/retired/down wins; otherwise what the collector's liveness says."""
    return declared if declared in DECLARED_WINS else live


def from_prometheus(url: str, timeout: float = 5.0) -> dict[str, str]:
    """``host -> up|down`` from the collector targets' ``up``; raises when Prometheus fails."""
    from portal.metrics.client import Prometheus

    out: dict[str, str] = {}
    for series in Prometheus(url, timeout=timeout).query(HOST_UP_PROMQL):
        host = series["metric"].get("host")
        if host:
            up = float(series["value"][1]) >= 1
            out[host] = "up" if up or out.get(host) == "up" else "down"
    return out


def last_samples(url: str, names: list[str]) -> dict[str, datetime]:
    """Each host's newest heartbeat sample in ``metric_samples`` (one index probe per host)."""
    if not names:
        return {}
    newest = (
        sa.select(metric_samples.c.time)
        .where(metric_samples.c.host == sa.bindparam("h"))
        .where(metric_samples.c.name == HEARTBEAT_METRIC)
        .order_by(metric_samples.c.time.desc())
        .limit(1)
        .scalar_subquery()
    )
    out: dict[str, datetime] = {}
    with get_engine(url).connect() as conn:
        for name in names:
            t = conn.execute(sa.select(newest), {"h": name}).scalar()
            if t is not None:
                out[name] = t
    return out


def from_database(
    url: str, names: list[str], now: datetime | None = None
) -> dict[str, tuple[str, datetime | None]]:
    """``host -> (up|down|unknown, last sample time)`` from the newest stored sample."""
    now = now or datetime.now(UTC)
    seen = last_samples(url, names)
    return {
        n: (
            ("unknown", None)
            if n not in seen
            else ("up" if now - seen[n] <= STALE_AFTER else "down", seen[n])
        )
        for n in names
    }


def host_states(cfg: Settings, only: str | None = None) -> Liveness:
    """Every host's state (or host ``only``'s), see the module's docstring.

    Raises ``DatabaseUnavailable`` when the database (the inventory) does not answer.
    """
    try:
        hosts = [h for h in registry.list_hosts(cfg) if only is None or h.name == only]
    except sa.exc.OperationalError as exc:
        raise DatabaseUnavailable(describe_unreachable(cfg.database_url, exc.orig or exc)) from None
    problem: PortalError | None = None
    live: dict[str, str] = {}
    try:
        if hosts:
            live = from_prometheus(cfg.prometheus_url)
    except PortalError as exc:
        problem = exc
    rows: list[HostState] = []
    if problem is None:
        source = "prometheus"
        for h in hosts:
            state = combine(h.state, live.get(h.name, "unknown"))
            rows.append(_row(h, state))
    else:
        source = "database"
        try:
            stored = from_database(cfg.database_url, [h.name for h in hosts])
        except sa.exc.OperationalError as exc:
            raise DatabaseUnavailable(
                describe_unreachable(cfg.database_url, exc.orig or exc)
            ) from None
        for h in hosts:
            state, seen = stored[h.name]
            rows.append(_row(h, combine(h.state, state), seen))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    return Liveness(rows, source, problem, counts)


def _row(h: registry.Host, state: str, seen: datetime | None = None) -> HostState:
    return HostState(h.name, h.role, h.address, h.collector_port, h.state, state, seen)


def collector_answers(address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a collector serves ``/metrics`` at ``address:port`` right now."""
    import httpx

    try:
        return httpx.get(f"http://{address}:{port}/metrics", timeout=timeout).status_code == 200
    except (httpx.HTTPError, httpx.InvalidURL):
        return False
