"""One psutil sampling of a host: the numbers behind the ``obs_host_*``/``obs_process_*`` metrics.

Kept apart from the exposition so that one sampling serves both ``/metrics`` and the database.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

#: Pseudo file systems and devices that say nothing about the host's real disks.
SKIP_FSTYPES = {"squashfs", "tmpfs", "devtmpfs", "overlay", "proc", "sysfs", "nsfs", "autofs"}
SKIP_DEVICE = re.compile(r"^(loop|ram|sr|dm-)\d*")


@dataclass(frozen=True)
class Sample:
    name: str
    kind: str  # gauge | counter
    value: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Watched:
    """A registered component whose processes the collector reports on."""

    component: str
    pattern: re.Pattern[str]


HELP = {
    "obs_host_cpu_usage_ratio": "Busy fraction of a CPU since the previous sample",
    "obs_host_load1": "1-minute load average",
    "obs_host_load5": "5-minute load average",
    "obs_host_load15": "15-minute load average",
    "obs_host_memory_used_bytes": "RAM in use",
    "obs_host_memory_total_bytes": "Total RAM",
    "obs_host_swap_used_bytes": "Swap in use",
    "obs_host_swap_total_bytes": "Total swap",
    "obs_host_filesystem_used_bytes": "Used bytes per mounted file system",
    "obs_host_filesystem_size_bytes": "Size per mounted file system",
    "obs_host_disk_read_bytes_total": "Bytes read per disk",
    "obs_host_disk_written_bytes_total": "Bytes written per disk",
    "obs_host_network_received_bytes_total": "Bytes received per interface",
    "obs_host_network_sent_bytes_total": "Bytes sent per interface",
    "obs_host_temperature_celsius": "Temperature per sensor",
    "obs_process_cpu_seconds_total": "CPU seconds used by a component's processes",
    "obs_process_resident_memory_bytes": "Resident memory of a component's processes",
    "obs_process_threads": "Threads of a component's processes",
    "obs_process_up": "1 when a process of the component runs",
}


def cpu() -> list[Sample]:
    total = psutil.cpu_percent(interval=None) / 100.0
    out = [Sample("obs_host_cpu_usage_ratio", "gauge", total, {"cpu": "total"})]
    for i, pct in enumerate(psutil.cpu_percent(interval=None, percpu=True)):
        out.append(Sample("obs_host_cpu_usage_ratio", "gauge", pct / 100.0, {"cpu": str(i)}))
    return out


def memory() -> list[Sample]:
    one, five, fifteen = os.getloadavg()
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    return [
        Sample("obs_host_load1", "gauge", one),
        Sample("obs_host_load5", "gauge", five),
        Sample("obs_host_load15", "gauge", fifteen),
        Sample("obs_host_memory_used_bytes", "gauge", float(vm.total - vm.available)),
        Sample("obs_host_memory_total_bytes", "gauge", float(vm.total)),
        Sample("obs_host_swap_used_bytes", "gauge", float(sw.used)),
        Sample("obs_host_swap_total_bytes", "gauge", float(sw.total)),
    ]


def filesystems() -> list[Sample]:
    out: list[Sample] = []
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.fstype in SKIP_FSTYPES or part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:  # vanished or unreadable mount: skip, do not fail the sample
            continue
        labels = {"mount": part.mountpoint}
        out.append(Sample("obs_host_filesystem_used_bytes", "gauge", float(usage.used), labels))
        out.append(Sample("obs_host_filesystem_size_bytes", "gauge", float(usage.total), labels))
    return out


def io_counters() -> list[Sample]:
    out: list[Sample] = []
    for dev, d in (psutil.disk_io_counters(perdisk=True) or {}).items():
        if SKIP_DEVICE.match(dev):
            continue
        labels = {"device": dev}
        out.append(Sample("obs_host_disk_read_bytes_total", "counter", d.read_bytes, labels))
        out.append(Sample("obs_host_disk_written_bytes_total", "counter", d.write_bytes, labels))
    for nic, n in (psutil.net_io_counters(pernic=True) or {}).items():
        labels = {"interface": nic}
        out.append(Sample("obs_host_network_received_bytes_total", "counter", n.bytes_recv, labels))
        out.append(Sample("obs_host_network_sent_bytes_total", "counter", n.bytes_sent, labels))
    return out


def temperatures() -> list[Sample]:
    """Only where the host has sensors; containers and VMs usually have none."""
    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:
        return []
    try:
        sensors = reader() or {}
    except OSError:
        return []
    out = []
    for chip, entries in sensors.items():
        for i, entry in enumerate(entries):
            sensor = f"{chip}_{entry.label or i}".replace(" ", "_")
            out.append(
                Sample("obs_host_temperature_celsius", "gauge", entry.current, {"sensor": sensor})
            )
    return out


def processes(watched: Iterable[Watched]) -> list[Sample]:
    """CPU, RSS and threads summed over each component's matching processes."""
    watched = list(watched)
    if not watched:
        return []
    totals = {w.component: [0.0, 0.0, 0.0, 0] for w in watched}
    me = os.getpid()
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if not cmdline or proc.pid == me:
            continue
        for w in watched:
            if not w.pattern.search(cmdline):
                continue
            with contextlib.suppress(psutil.Error), proc.oneshot():
                times = proc.cpu_times()
                acc = totals[w.component]
                acc[0] += times.user + times.system
                acc[1] += proc.memory_info().rss
                acc[2] += proc.num_threads()
                acc[3] += 1
    out = []
    for comp, (cpu_s, rss, threads, count) in totals.items():
        labels = {"component": comp}
        out.append(Sample("obs_process_cpu_seconds_total", "counter", cpu_s, labels))
        out.append(Sample("obs_process_resident_memory_bytes", "gauge", rss, labels))
        out.append(Sample("obs_process_threads", "gauge", threads, labels))
        out.append(Sample("obs_process_up", "gauge", 1.0 if count else 0.0, labels))
    return out


def sample(watched: Iterable[Watched] = ()) -> list[Sample]:
    """Everything the host collector reports, in one pass."""
    return [*cpu(), *memory(), *filesystems(), *io_counters(), *temperatures(), *processes(watched)]
