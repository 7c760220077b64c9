"""What the scheduler needs from an orchestrator: the actuator interface.

Slurm (``portal.sched.slurm.Slurm``) is the one implementation. Another orchestrator (Docker
Swarm, Kubernetes) plugs in as a package that provides a class with these methods and a factory
``factory(cfg) -> Actuator``, named by ``PORTAL_SCHED_ACTUATOR=package.module:factory``; see
docs/scheduling.md. The scheduler only ever calls what is declared here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

from portal.errors import PortalError
from portal.sched.slurm import Job, Node
from portal.settings import Settings


class Actuator(Protocol):
    """Submits, follows and cancels batch jobs, and reports nodes, on one orchestrator."""

    def submit(
        self,
        name: str,
        command: str,
        partition: str,
        cpus: int = 1,
        memory_mb: int = 256,
        comment: str = "",
        time_limit_minutes: int | None = None,
        output: str = "/dev/null",
    ) -> int:
        """Start a job named ``name`` (the idempotency key: ``obs-work-<id>-<attempt>``)."""
        ...

    def cancel(self, job_id: int) -> None: ...

    def jobs(self) -> list[Job]:
        """Active jobs and recently finished ones, with the orchestrator's pending reason."""
        ...

    def nodes(self) -> list[Node]: ...

    def batch_cpu_limit(self, partition: str) -> int | None:
        """CPUs per node the batch share may use (None: the whole node)."""
        ...

    def release_begin_time(self, job_id: int) -> None:
        """Make a preempted, requeued job eligible again at once."""
        ...

    def drain(self, node: str, reason: str) -> None: ...

    def resume(self, node: str) -> None: ...


def slurm(cfg: Settings) -> Actuator:
    """The default factory: the Slurm CLI on ``PORTAL_SCHED_SLURM_CONF`` (or the local one)."""
    from portal.sched.options import slurm_conf
    from portal.sched.slurm import Slurm

    def locate() -> Path | None:
        return slurm_conf(cfg)

    return Slurm(locate=locate)


def load(cfg: Settings) -> Actuator:
    """The actuator ``PORTAL_SCHED_ACTUATOR`` names; a bad name is one clear error."""
    from portal.sched.options import options

    spec = options(cfg).actuator
    module, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise PortalError(f"PORTAL_SCHED_ACTUATOR {spec!r} cannot be loaded: {exc}") from None
    actuator: Actuator = factory(cfg)
    return actuator
