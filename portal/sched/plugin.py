"""The scheduling capability: ``portal sched``, the scheduler component, the Scheduling page,
its settings and work kinds.

Its alert rules (``prometheus/rules/sched.yml``) are registered here. Its Grafana dashboard
(``grafana-provisioning/dashboards/scheduling.json``, from ``portal/grafana/dashboards/sched.py``)
is shipped in the folder the grafana capability registers as a whole, so ``register_dashboards``
returns nothing (registering it twice would load it twice).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from portal.hookspecs import Component, Dashboard, WorkKind, hookimpl, portal_argv
from portal.lazy import LazyCommand
from portal.resources import shipped

#: where Slurm's commands look for the cluster when no setting names one
SYSTEM_SLURM_CONF = Path("/etc/slurm/slurm.conf")

if TYPE_CHECKING:
    from portal.settings import Setting, Settings


@hookimpl
def register_settings() -> list[Setting]:
    from portal.sched.options import SPECS

    return list(SPECS)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "sched",
            "portal.sched.cli:sched",
            "Backlog-driven batch scheduling on Slurm; real-time work keeps its share.",
        )
    )


@hookimpl
def register_components(settings: Settings) -> list[Component]:
    return [
        # the demo's own single-node Slurm (a site points PORTAL_SCHED_SLURM_CONF at its own)
        Component("sched-slurm", portal_argv("sched", "slurm", "run"), demo_only=True, order=35),
        Component("sched", portal_argv("sched", "run"), order=58),
        Component(
            "sched-demo-backlog", portal_argv("sched", "demo-backlog"), demo_only=True, order=59
        ),
    ]


@hookimpl
def register_work_kinds() -> list[WorkKind]:
    from portal.sched.work import BUILTIN

    return list(BUILTIN)


@hookimpl
def register_pages() -> list[Path]:
    return [Path(__file__).resolve().parent / "pages"]


@hookimpl
def register_dashboards() -> list[Dashboard]:
    return []  # the JSON is shipped in grafana-provisioning/, registered by the grafana plugin


@hookimpl
def prometheus_rule_files() -> list[Path]:
    return [shipped("prometheus") / "rules" / "sched.yml"]


@hookimpl
def batch_work_on_host(settings: Settings, host: str) -> list[str]:
    from portal.sched.options import slurm_conf
    from portal.sched.slurm import Slurm, SlurmError

    conf = slurm_conf(settings)
    if conf is None and not SYSTEM_SLURM_CONF.exists():
        return []  # no Slurm here: no batch work of ours anywhere
    try:
        jobs = Slurm(locate=lambda: conf).running_on(host)
    except SlurmError as exc:
        if "Invalid node name" in str(exc):
            return []  # not a node of the cluster: no batch work there
        raise
    return [f"Slurm job {job}" for job in jobs]
