"""The inventory: which hosts exist and which components run on them.

Every change regenerates Prometheus' file_sd targets (so scraping follows the inventory
without a restart) and publishes an ``inventory.*`` event. Adding twice updates in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from portal.db.engine import get_engine
from portal.db.tables import components, hosts
from portal.errors import PortalError
from portal.events import bus as events
from portal.metrics.targets import write_targets
from portal.settings import Settings

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$", re.IGNORECASE)
STATES = ("up", "maintenance", "down", "retired")
KINDS = ("real-time", "batch")


@dataclass(frozen=True)
class Host:
    name: str
    role: str
    address: str
    collector_port: int
    state: str
    labels: dict[str, Any]


@dataclass(frozen=True)
class Component:
    name: str
    host: str
    kind: str
    process_match: str | None
    metrics_port: int | None
    desired_state: str
    labels: dict[str, Any]


def _check_name(what: str, name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise PortalError(
            f"{what} name {name!r} is invalid: use 1-63 letters, digits, '.', '_' or '-'"
        )


def _check_port(what: str, port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise PortalError(f"{what} {port} is out of range (1 to 65535)")


def _changed(cfg: Settings, topic: str, payload: dict[str, Any]) -> None:
    """After every change: targets first (scraping), then the event (who changed what)."""
    write_targets(cfg)
    events.publish(cfg.database_url, topic, payload, source="inventory")


def add_host(
    cfg: Settings,
    name: str,
    role: str = "compute",
    address: str = "127.0.0.1",
    collector_port: int | None = None,
    labels: dict[str, Any] | None = None,
    state: str | None = None,
) -> Host:
    """Add a host, or update it when it exists (idempotent).

    ``state`` None (what the demo and a collector registering itself pass) keeps the state an
    operator declared on an existing host, and is ``up`` for a new one: re-registration never
    takes a host out of maintenance.
    """
    _check_name("host", name)
    _check_name("role", role)
    if not address or any(c.isspace() for c in address) or ":" in address:
        raise PortalError(f"address {address!r} is invalid: give a host name or IPv4 address")
    port = cfg.collector_port if collector_port is None else collector_port
    _check_port("collector port", port)
    if state is not None and state not in STATES:
        raise PortalError(f"state {state!r} is not one of {', '.join(STATES)}")
    values = {
        "name": name,
        "role": role,
        "address": address,
        "collector_port": port,
        "state": state or "up",
        "labels": labels or {},
    }
    new = insert(hosts).values(**values)
    keep = ("name",) if state is not None else ("name", "state")
    update = {k: new.excluded[k] for k in values if k not in keep}
    stmt = new.on_conflict_do_update(
        index_elements=["name"], set_={**update, "updated_at": sa.func.now()}
    ).returning(hosts.c.state)
    with get_engine(cfg.database_url).begin() as conn:
        values["state"] = conn.execute(stmt).scalar_one()
    _changed(cfg, "inventory.host_added", {k: v for k, v in values.items() if k != "labels"})
    return Host(**values)  # type: ignore[arg-type]


def list_hosts(cfg: Settings) -> list[Host]:
    query = sa.select(
        hosts.c.name,
        hosts.c.role,
        hosts.c.address,
        hosts.c.collector_port,
        hosts.c.state,
        hosts.c.labels,
    ).order_by(hosts.c.name)
    with get_engine(cfg.database_url).connect() as conn:
        return [Host(**r._mapping) for r in conn.execute(query)]


def get_host(cfg: Settings, name: str) -> Host | None:
    return next((h for h in list_hosts(cfg) if h.name == name), None)


def remove_host(cfg: Settings, name: str) -> None:
    """Remove a host and its components; an unknown name is an error, not a silent no-op."""
    with get_engine(cfg.database_url).begin() as conn:
        conn.execute(components.delete().where(components.c.host == name))
        gone = conn.execute(hosts.delete().where(hosts.c.name == name)).rowcount
    if not gone:
        raise PortalError(f"host {name!r} is not in the inventory")
    _changed(cfg, "inventory.host_removed", {"name": name})


def set_host_state(cfg: Settings, name: str, state: str) -> None:
    if state not in STATES:
        raise PortalError(f"state {state!r} is not one of {', '.join(STATES)}")
    with get_engine(cfg.database_url).begin() as conn:
        done = conn.execute(
            hosts.update().where(hosts.c.name == name).values(state=state, updated_at=sa.func.now())
        ).rowcount
    if not done:
        raise PortalError(f"host {name!r} is not in the inventory")
    _changed(cfg, "inventory.host_state", {"name": name, "state": state})


def add_component(
    cfg: Settings,
    host: str,
    name: str,
    kind: str = "real-time",
    process_match: str | None = None,
    metrics_port: int | None = None,
    labels: dict[str, Any] | None = None,
) -> Component:
    """Add a component to a known host, or update it (idempotent)."""
    _check_name("component", name)
    if kind not in KINDS:
        raise PortalError(f"component kind {kind!r} is not one of {', '.join(KINDS)}")
    _check_port("metrics port", metrics_port)
    if process_match:
        try:
            re.compile(process_match)
        except re.error as exc:
            raise PortalError(f"process match {process_match!r} is not a regex: {exc}") from None
    if get_host(cfg, host) is None:
        raise PortalError(f"host {host!r} is not in the inventory (add it with: portal hosts add)")
    values = {
        "name": name,
        "host": host,
        "kind": kind,
        "process_match": process_match or None,
        "metrics_port": metrics_port,
        "labels": labels or {},
    }
    stmt = insert(components).values(**values)
    stmt = stmt.on_conflict_do_update(
        constraint="components_host_name",
        set_={k: stmt.excluded[k] for k in values if k not in ("name", "host")},
    )
    with get_engine(cfg.database_url).begin() as conn:
        conn.execute(stmt)
    _changed(cfg, "inventory.component_added", {"host": host, "name": name, "kind": kind})
    return Component(desired_state="running", **values)  # type: ignore[arg-type]


def list_components(cfg: Settings, host: str | None = None) -> list[Component]:
    query = sa.select(
        components.c.name,
        components.c.host,
        components.c.kind,
        components.c.process_match,
        components.c.metrics_port,
        components.c.desired_state,
        components.c.labels,
    ).order_by(components.c.host, components.c.name)
    if host is not None:
        query = query.where(components.c.host == host)
    with get_engine(cfg.database_url).connect() as conn:
        return [Component(**r._mapping) for r in conn.execute(query)]


def remove_component(cfg: Settings, host: str, name: str) -> None:
    with get_engine(cfg.database_url).begin() as conn:
        gone = conn.execute(
            components.delete().where(components.c.host == host, components.c.name == name)
        ).rowcount
    if not gone:
        raise PortalError(f"component {name!r} on host {host!r} is not in the inventory")
    _changed(cfg, "inventory.component_removed", {"host": host, "name": name})
