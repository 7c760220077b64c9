"""Prometheus file_sd targets from the inventory, so a new host is scraped without a restart.

Prometheus re-reads ``<data_dir>/prometheus/targets/*.json`` every 5 s; files are replaced
atomically (write, fsync, rename), so it never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from portal.db.engine import get_engine
from portal.db.tables import components, hosts
from portal.settings import Settings
from portal.stack.configs import targets_dir

#: Hosts in these states are not scraped (a retired host would only raise "down" alerts).
UNSCRAPED_STATES = ("retired",)


def host_targets(url: str) -> list[dict[str, Any]]:
    """One file_sd group per host collector, labelled with the inventory's host, role and state.

    ``declared_state`` lets PromQL combine liveness with maintenance (``liveness.py``); like
    ``role`` and ``instance`` it stays on ``up`` and is dropped from the scraped samples.
    """
    query = (
        sa.select(
            hosts.c.name, hosts.c.role, hosts.c.address, hosts.c.collector_port, hosts.c.state
        )
        .where(hosts.c.state.notin_(UNSCRAPED_STATES))
        .order_by(hosts.c.name)
    )
    with get_engine(url).connect() as conn:
        return [
            {
                "targets": [f"{r.address}:{r.collector_port}"],
                "labels": {"host": r.name, "role": r.role, "declared_state": r.state},
            }
            for r in conn.execute(query)
        ]


def component_targets(url: str) -> list[dict[str, Any]]:
    """Components that serve their own ``/metrics`` (a ``metrics_port``) are scraped too."""
    query = (
        sa.select(components.c.name, components.c.metrics_port, hosts.c.name.label("host"))
        .select_from(components.join(hosts, components.c.host == hosts.c.name))
        .where(components.c.metrics_port.is_not(None))
        .where(hosts.c.state.notin_(UNSCRAPED_STATES))
        .order_by(hosts.c.name, components.c.name)
    )
    with get_engine(url).connect() as conn:
        rows = list(conn.execute(query))
        addresses = dict(conn.execute(sa.select(hosts.c.name, hosts.c.address)).all())
    return [
        {
            "targets": [f"{addresses[r.host]}:{r.metrics_port}"],
            "labels": {"host": r.host, "component": r.name},
        }
        for r in rows
    ]


def write_json_atomic(path: Path, data: object) -> None:
    """Replace ``path`` in one rename so readers see the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_targets(cfg: Settings) -> Path:
    """Regenerate ``hosts.json`` and ``components.json``; returns the hosts file."""
    directory = targets_dir(cfg)
    hosts_file = directory / "hosts.json"
    write_json_atomic(hosts_file, host_targets(cfg.database_url))
    write_json_atomic(directory / "components.json", component_targets(cfg.database_url))
    return hosts_file
