"""Capacity: what real-time components declare in the inventory, what the real-time share holds
in Slurm, and how much the batch partition can take right now."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from portal.errors import PortalError
from portal.sched.slurm import Job, Node

if TYPE_CHECKING:
    from portal.sched.actuator import Actuator
from portal.settings import Settings


@dataclass(frozen=True)
class Needs:
    """Sum of the ``cores``/``memory_mb`` labels of components of one kind in the inventory."""

    cores: float
    memory_mb: int
    components: tuple[str, ...]
    undeclared: tuple[str, ...]  # components of that kind without a cores label


def _number(component: str, label: str, raw: object) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        raise PortalError(f"component {component}: label {label}={raw!r} is not a number") from None
    if value < 0:
        raise PortalError(f"component {component}: label {label}={raw!r} is negative")
    return value


def declared(cfg: Settings, kind: str = "real-time") -> Needs:
    """What components of ``kind`` declare (``portal hosts component ... --label cores=2``)."""
    from portal.inventory import registry

    cores = 0.0
    memory = 0
    names, undeclared = [], []
    for comp in registry.list_components(cfg):
        if comp.kind != kind:
            continue
        name = f"{comp.host}/{comp.name}"
        names.append(name)
        if "cores" not in comp.labels:
            undeclared.append(name)
            continue
        cores += _number(name, "cores", comp.labels["cores"])
        memory += int(_number(name, "memory_mb", comp.labels.get("memory_mb", 0)))
    return Needs(cores, memory, tuple(names), tuple(undeclared))


@dataclass(frozen=True)
class Share:
    """The real-time share and the batch capacity of the cluster as Slurm reports them now."""

    total_cpus: int
    realtime_cpus: int  # CPUs the batch partition may not use (held for real-time work)
    batch_cpus: int  # the batch partition's limit over its usable nodes
    batch_used_cpus: int  # held by running batch jobs
    free_batch_cpus: int
    free_memory_mb: int
    nodes: tuple[Node, ...]
    drained: tuple[str, ...] = field(default_factory=tuple)


def share(slurm: Actuator, nodes: list[Node], jobs: list[Job], partition: str) -> Share:
    """Free batch CPUs: per usable node, the lesser of its idle CPUs and the partition's unused
    ``MaxCPUsPerNode``; drained nodes offer nothing."""
    part_limit = slurm.batch_cpu_limit(partition)
    members = [n for n in nodes if partition in n.partitions]
    total = sum(n.cpus for n in members)
    realtime = batch = used_all = free = free_mem = 0
    drained = []
    for node in members:
        limit = node.cpus if part_limit is None else min(part_limit, node.cpus)
        realtime += node.cpus - limit
        used = sum(
            j.cpus
            for j in jobs
            if j.partition == partition
            and j.state in ("RUNNING", "COMPLETING")
            and j.nodes == node.name
        )
        used_all += used
        if node.drained:
            drained.append(node.name)
            continue
        batch += limit
        free += max(0, min(node.cpus - node.alloc_cpus, limit - used))
        free_mem += max(0, node.memory_mb - node.alloc_memory_mb)
    return Share(total, realtime, batch, used_all, free, free_mem, tuple(nodes), tuple(drained))


@dataclass(frozen=True)
class Check:
    ok: bool
    lines: tuple[str, ...]


def check(cfg: Settings, slurm: Actuator, realtime_partition: str, batch_partition: str) -> Check:
    """Do the real-time components' declared needs fit in what the real-time share holds?"""
    needs = declared(cfg)
    nodes = slurm.nodes()
    held = share(slurm, nodes, [], batch_partition)
    rt_nodes = [n for n in nodes if realtime_partition in n.partitions]
    lines = [
        f"real-time components: {len(needs.components)} declaring {needs.cores:g} cores and "
        f"{needs.memory_mb} MB",
        f"real-time share: {held.realtime_cpus} of {held.total_cpus} CPUs held from batch work "
        f"(partition {realtime_partition} on {len(rt_nodes)} node(s))",
    ]
    ok = True
    if not rt_nodes:
        ok = False
        lines.append(f"problem: Slurm has no partition {realtime_partition!r} with nodes")
    if needs.cores > held.realtime_cpus:
        ok = False
        lines.append(
            f"problem: declared real-time needs ({needs.cores:g} cores) exceed the real-time "
            f"share ({held.realtime_cpus} CPUs): real-time jobs beyond it preempt batch work; "
            "raise the share (portal sched config) and reconfigure Slurm"
        )
    memory = sum(n.memory_mb for n in rt_nodes)
    if needs.memory_mb > memory:
        ok = False
        lines.append(
            f"problem: declared real-time memory ({needs.memory_mb} MB) exceeds the real-time "
            f"nodes' memory ({memory} MB)"
        )
    for name in needs.undeclared:
        lines.append(f"note: {name} declares no cores label (counted as 0)")
    return Check(ok, tuple(lines))
