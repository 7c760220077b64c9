"""The simulated telescope: a small cluster whose numbers behave like the real pipeline's.

One model serves both ``demo run`` (live, through the telemetry library) and ``demo seed``
(history, straight to COPY): it advances simulated time and keeps every series' value, and
returns the side records (pointings, beam events, data products, events) each step produced.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from portal.demo.faults import Fault
from portal.errors import PortalError

#: The seed's real rates, for the full 1024-beam instrument.
REAL_BEAMS = 1024
POINTINGS_PER_DAY = 165_537
L1_BYTES_PER_DAY = 45e12
RFI_BYTES_PER_DAY = 3.7e12
PACKET_BYTES = 8192
LONGITUDE_DEG = -119.62  # the site: local sidereal and solar time follow from it
STACKS = ("daily", "monthly", "cumulative")
HHAT_WORKERS = 4
HOST_CORES = 32
HOST_MEMORY = 256 * 2**30
HOST_DISK = 480 * 10**9

SeriesKey = tuple[str, str, str, tuple[tuple[str, str], ...]]  # host, component, name, labels

#: Series only the simulator has (the others' help texts live with their real exporters).
HELP = {
    "obs_host_clock_offset_seconds": "Offset of the host's clock from the NTP reference",
    "obs_transfer_queued_bytes": "Bytes waiting to be transferred",
    "obs_transfer_sent_bytes_total": "Bytes transferred",
    "obs_transfer_oldest_queued_seconds": "Age of the oldest product waiting for transfer",
}
TRANSFER_DEST = "archive"
TRANSFER_HEADROOM = 4.0  # the archive link carries 4x the average inflow
PACKET_LOSS_FAULT = 0.05
CLOCK_SKEW_FAULT = 2.5
#: Background log lines per simulated minute per component: (info, warning), and errors/hour.
LOG_RATES = {
    "l1": (6.0, 3.0, 1.0),
    "storage": (4.0, 2.0, 0.5),
    "pointing-recorder": (4.0, 1.0, 0.5),
    "hhat-worker": (3.0, 1.0, 1.0),
}
LOG_CAP = 12  # lines of one kind per component per step (high --speed must not flood)
LogLine = tuple[datetime, str, str, str, str, dict[str, Any]]  # time host comp level msg fields


@dataclass(frozen=True)
class SimHost:
    name: str
    role: str
    component: str
    kind: str  # real-time | batch
    beams: tuple[int, ...] = ()


def layout(
    compute_nodes: int = 8,
    beams_per_node: int = 4,
    storage_nodes: int = 2,
    beams: int | None = None,
) -> list:
    """head01, cn01..cnNN (L1 beams), st01..stNN (storage), batch01 (Hhat workers).

    ``beams`` (total) spreads that many beams over the compute nodes, as evenly as they go;
    without it every node gets ``beams_per_node``.
    """
    total = compute_nodes * beams_per_node if beams is None else beams
    if total < compute_nodes:
        raise PortalError(f"--beams {total} is fewer than the {compute_nodes} compute nodes")
    per_node = -(-total // compute_nodes)  # ceiling: the last nodes may have fewer
    hosts = [SimHost("head01", "head", "pointing-recorder", "real-time")]
    first = 0
    for i in range(compute_nodes):
        count = min(per_node, total - first - (compute_nodes - i - 1))  # leave 1 for the rest
        hosts.append(
            SimHost(
                f"cn{i + 1:02d}", "compute", "l1", "real-time", tuple(range(first, first + count))
            )
        )
        first += count
    for i in range(storage_nodes):
        hosts.append(SimHost(f"st{i + 1:02d}", "storage", "storage", "real-time"))
    hosts.append(SimHost("batch01", "batch", "hhat-worker", "batch"))
    return hosts


@dataclass(frozen=True)
class Scale:
    """A ``--scale`` preset: the simulated telescope's shape."""

    compute_nodes: int
    beams_per_node: int
    storage_nodes: int
    beams: int | None = None  # a fixed total, whatever the compute nodes (the real instrument)
    pointings_per_day: int = POINTINGS_PER_DAY


#: ``demo``: small enough for a laptop (32 beams, 12 hosts); ``full``: the real instrument,
#: 1,024 beams on 128 compute nodes, 16 storage nodes, 165,537 pointings a day.
SCALES = {
    "demo": Scale(compute_nodes=8, beams_per_node=4, storage_nodes=2),
    "full": Scale(compute_nodes=128, beams_per_node=8, storage_nodes=16, beams=REAL_BEAMS),
}
#: Roles ``--hosts`` sizes (head01 and batch01 are one each, as in the pipeline).
HOST_ROLES = ("compute", "storage")


def parse_hosts(raw: str) -> dict[str, int]:
    """``compute=128,storage=16`` -> ``{"compute": 128, "storage": 16}``, or one clear error."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        role, sep, count = part.partition("=")
        role = role.strip()
        if not sep or role not in HOST_ROLES:
            raise PortalError(
                f"--hosts {part!r}: expected ROLE=N with ROLE one of {', '.join(HOST_ROLES)}"
            )
        if not count.strip().isdigit() or not 1 <= int(count) <= 1024:
            raise PortalError(f"--hosts {part!r}: N must be a whole number from 1 to 1024")
        out[role] = int(count)
    return out


def shape(
    scale: str = "demo",
    compute_nodes: int | None = None,
    beams_per_node: int | None = None,
    storage_nodes: int | None = None,
    beams: int | None = None,
    hosts: str = "",
    pointings_per_day: int | None = None,
) -> tuple[list[SimHost], int]:
    """The hosts and pointings a day the CLI options ask for: the preset, then what is given."""
    preset = SCALES[scale]
    by_role = parse_hosts(hosts)
    for role, given in (("compute", compute_nodes), ("storage", storage_nodes)):
        if given is not None and role in by_role and by_role[role] != given:
            raise PortalError(f"--{role}-nodes {given} and --hosts {role}={by_role[role]} differ")
    compute = compute_nodes or by_role.get("compute") or preset.compute_nodes
    storage = storage_nodes or by_role.get("storage") or preset.storage_nodes
    per_node = beams_per_node or preset.beams_per_node
    if beams is None and beams_per_node is None:
        beams = preset.beams  # full: 1,024 beams over however many compute nodes
    return (
        layout(compute, per_node, storage, beams),
        pointings_per_day or preset.pointings_per_day,
    )


def sidereal_hours(t: datetime) -> float:
    """Local sidereal time: which part of the sky is overhead at the site."""
    days = (t - datetime(2000, 1, 1, 12, tzinfo=UTC)).total_seconds() / 86400.0
    return (18.697374558 + 24.06570982441908 * days + LONGITUDE_DEG / 15.0) % 24.0


def solar_hours(t: datetime) -> float:
    return (t.hour + t.minute / 60 + t.second / 3600 + LONGITUDE_DEG / 15.0) % 24.0


def _bump(hours: float, centre: float, width: float) -> float:
    d = min(abs(hours - centre), 24 - abs(hours - centre))
    return math.exp(-((d / width) ** 2))


def sky_factor(t: datetime) -> float:
    """Data rate multiplier: highest when the Galactic centre (RA 17.8 h) transits."""
    lst = sidereal_hours(t)
    return 1.0 + 0.6 * _bump(lst, 17.76, 1.6) + 0.25 * _bump(lst, 5.76, 1.6)


def rfi_ratio(t: datetime, rng: random.Random) -> float:
    """Fraction of the band masked: more RFI in the local daytime."""
    day = _bump(solar_hours(t), 14.0, 4.0)
    return min(0.95, max(0.0, 0.06 + 0.14 * day + rng.gauss(0, 0.01)))


@dataclass
class StepOutput:
    """Records a step produced besides series values."""

    pointings: list[tuple] = field(default_factory=list)
    beam_events: list[tuple] = field(default_factory=list)
    products: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    jobs: list[tuple[str, float]] = field(default_factory=list)  # (job, duration seconds)
    logs: list[LogLine] = field(default_factory=list)


class Sim:
    """State of the simulated cluster at simulated time ``now``."""

    def __init__(
        self,
        start: datetime,
        hosts: list[SimHost],
        pointings_per_day: int = POINTINGS_PER_DAY,
        seed: int = 7,
    ) -> None:
        self.now = start
        self.hosts = hosts
        self.rng = random.Random(seed)
        self.beams = [b for h in hosts for b in h.beams]
        self.beam_host = {b: h.name for h in hosts for b in h.beams}
        self.storage = [h.name for h in hosts if h.role == "storage"]
        self.scale = len(self.beams) / REAL_BEAMS
        self.pointing_s = 86400.0 * len(self.beams) / max(1, pointings_per_day)
        self.values: dict[SeriesKey, float] = {}
        self.kinds: dict[str, str] = {}
        self.dec = {
            b: -10.0 + 100.0 * (i + 0.5) / max(1, len(self.beams)) for i, b in enumerate(self.beams)
        }
        self.max_dm = {b: 2000.0 for b in self.beams}
        self.next_pointing = {
            b: start + timedelta(seconds=self.pointing_s * i / max(1, len(self.beams)))
            for i, b in enumerate(self.beams)
        }
        self.loss_until = {b: start for b in self.beams}
        self.burst_lag = {b: 0.0 for b in self.beams}
        self.capacity = (
            (L1_BYTES_PER_DAY + RFI_BYTES_PER_DAY) * self.scale * 30 / max(1, len(self.storage))
        )
        self.hhat_started: datetime | None = None
        self.day_closed: Any = None  # the day whose daily Hhat products the next run completes
        self.faults: list[Fault] = []  # set from the fault file before each step (live mode)
        self.wall: Callable[[], float] = time.time
        self.log_rng = random.Random(seed + 1)  # logs do not change the metric streams
        self.transfer_queue: dict[str, list[list[Any]]] = {st: [] for st in self.storage}
        self.summary: dict[str, float] = {"pointings": 0, "candidates": 0}
        self.transfer_done: dict[str, float] = {st: 0.0 for st in self.storage}
        self._announced: set[str] = set()
        self._init_values()

    # -- series bookkeeping ------------------------------------------------------------------
    def _key(self, host: str, comp: str, name: str, **labels: object) -> SeriesKey:
        return (host, comp, name, tuple((k, str(v)) for k, v in labels.items()))

    def add(self, host: str, comp: str, name: str, delta: float, **labels: object) -> None:
        self.kinds[name] = "counter"
        key = self._key(host, comp, name, **labels)
        self.values[key] = self.values.get(key, 0.0) + delta

    def set(self, host: str, comp: str, name: str, value: float, **labels: object) -> None:
        self.kinds[name] = "gauge"
        self.values[self._key(host, comp, name, **labels)] = value

    def _init_values(self) -> None:
        for b in self.beams:
            h = self.beam_host[b]
            for name in (
                "obs_l1_received_bytes_total",
                "obs_l1_packets_received_total",
                "obs_l1_packets_lost_total",
                "obs_l1_dm_adjustments_total",
            ):
                self.add(h, "l1", name, 0.0, beam=b)
            self.add("head01", "pointing-recorder", "obs_pointings_total", 0.0, beam=b)
            self.add("batch01", "hhat-worker", "obs_candidates_total", 0.0, beam=b)
        for st in self.storage:
            self.set(st, "storage", "obs_storage_capacity_bytes", self.capacity, mount="/data")
            for product, share in (("l1", 0.36), ("rfi", 0.03), ("hhat", 0.01)):
                used = self.capacity * share
                self.set(
                    st, "storage", "obs_storage_used_bytes", used, mount="/data", product=product
                )
        for stack in STACKS:
            self.set("batch01", "hhat-worker", "obs_hhat_stacks_pending", 0.0, stack=stack)
            self.add("batch01", "hhat-worker", "obs_hhat_stacks_processed_total", 0.0, stack=stack)
        self.set("batch01", "hhat-worker", "obs_hhat_workers_busy", 0.0)
        for st in self.storage:
            labels = {"destination": TRANSFER_DEST}
            self.set(st, "storage", "obs_transfer_queued_bytes", 0.0, **labels)
            self.add(st, "storage", "obs_transfer_sent_bytes_total", 0.0, **labels)
            self.set(st, "storage", "obs_transfer_oldest_queued_seconds", 0.0, **labels)
        for sh in self.hosts:  # host-collector series (component ''), as on a real host
            self.set(sh.name, "", "obs_host_clock_offset_seconds", 0.0)
            self.set(sh.name, "", "obs_host_memory_total_bytes", HOST_MEMORY)
            self.set(sh.name, "", "obs_host_filesystem_size_bytes", HOST_DISK, mount="/")
            self.add(sh.name, "", "obs_host_network_received_bytes_total", 0.0, interface="eth0")
        self._host_load(self.now)

    def value(self, host: str, comp: str, name: str, **labels: object) -> float:
        return self.values[self._key(host, comp, name, **labels)]

    # -- faults ------------------------------------------------------------------------------
    def fault(self, kind: str, host: str) -> Fault | None:
        """The active fault of ``kind`` on ``host`` (component-crash: on any of its components)."""
        return next((f for f in self.faults if f.kind == kind and f.host == host), None)

    def host_down(self, host: str) -> bool:
        return self.fault("host-down", host) is not None

    def component_up(self, host: str, comp: str) -> bool:
        if self.host_down(host):
            return False
        return not any(
            f.kind == "component-crash" and f.host == host and f.component in ("", comp)
            for f in self.faults
        )

    def _component(self, host: str) -> str:
        return next((h.component for h in self.hosts if h.name == host), "")

    # -- time --------------------------------------------------------------------------------
    def step(self, seconds: float, to_real: Any = None) -> StepOutput:
        """Advance ``seconds`` of simulated time; ``to_real`` maps sim times to row times."""
        out = StepOutput()
        start, end = self.now, self.now + timedelta(seconds=seconds)
        stamp = to_real or (lambda t: t)
        self._l1(start, end, seconds, out, stamp)
        n_pointings = self._pointings(end, out, stamp)
        self._storage(start, end, seconds, out)
        self._transfers(start, end, seconds, out)
        self._hhat(start, end, seconds, out, n_pointings)
        self._host_load(end)
        self._summaries(start, end, out)
        self._logs(start, end, seconds, out, stamp)
        self.now = end
        return out

    def _l1(self, start: datetime, end: datetime, dt: float, out: StepOutput, stamp: Any) -> None:
        mid = start + (end - start) / 2
        sky = sky_factor(mid)
        per_beam = (L1_BYTES_PER_DAY / 86400.0) / REAL_BEAMS * 8  # received is ~8x what is kept
        rng = self.rng
        for b in self.beams:
            h = self.beam_host[b]
            got = per_beam * sky * dt * rng.uniform(0.95, 1.05)
            if not self.component_up(h, "l1"):
                got = 0.0  # the process is gone: nothing received, nothing counted
            packets = got / PACKET_BYTES
            if self.loss_until[b] <= mid and rng.random() < dt / (86400.0 * 2):
                self.loss_until[b] = mid + timedelta(minutes=rng.uniform(5, 30))
                self.burst_lag[b] = rng.choice((20.0, 20.0, 20.0, 90.0))  # some fall far behind
                out.beam_events.append(
                    (stamp(mid), b, "packet_loss", 0.02, {"host": h, "reason": "switch port flap"})
                )
            loss = 0.02 if self.loss_until[b] > mid else 2e-5
            faulty = self.fault("packet-loss", h) is not None
            if faulty:
                loss = PACKET_LOSS_FAULT
            self.add(h, "l1", "obs_l1_received_bytes_total", got, beam=b)
            self.add(h, "l1", "obs_l1_packets_received_total", round(packets * (1 - loss)), beam=b)
            self.add(h, "l1", "obs_l1_packets_lost_total", round(packets * loss), beam=b)
            self.set(h, "l1", "obs_l1_rfi_masked_ratio", rfi_ratio(mid, rng), beam=b)
            lag = abs(rng.gauss(0.8, 0.3)) + (self.burst_lag[b] if self.loss_until[b] > mid else 0)
            lag += 20.0 if faulty else 0.0
            self.set(h, "l1", "obs_l1_lag_seconds", lag, beam=b)
            if rng.random() < dt / (6 * 3600.0):  # a DM adjustment every ~6 h per beam
                old = self.max_dm[b]
                new = round(min(5000.0, max(500.0, old * rng.choice((0.8, 1.25)))), 1)
                self.max_dm[b] = new
                self.add(h, "l1", "obs_l1_dm_adjustments_total", 1, beam=b)
                payload = {"old": old, "new": new, "host": h}
                out.beam_events.append((stamp(mid), b, "dm_adjust", new, payload))
                out.events.append(("pipeline.beam_dm_adjusted", {"beam": b, **payload}))

    def _pointings(self, end: datetime, out: StepOutput, stamp: Any) -> int:
        rng = self.rng
        recorder = self.component_up("head01", "pointing-recorder")
        total = 0
        for b in self.beams:
            t = self.next_pointing[b]
            n = 0
            keep = recorder and self.component_up(self.beam_host[b], "l1")
            while t < end:
                lst = sidereal_hours(t)
                rfi = rfi_ratio(t, rng)
                nbytes = int(
                    L1_BYTES_PER_DAY / 86400 / REAL_BEAMS * self.pointing_s * sky_factor(t)
                )
                cands = rng.choice((0, 0, 0, 0, 1, 1, 2, 3))
                t += timedelta(seconds=self.pointing_s)
                if not keep:
                    continue
                self.summary["pointings"] += 1
                self.summary["candidates"] += cands
                out.pointings.append(
                    (
                        stamp(t - timedelta(seconds=self.pointing_s)),
                        b,
                        round(lst * 15.0 + rng.uniform(-0.5, 0.5), 4) % 360.0,
                        round(self.dec[b], 3),
                        round(self.pointing_s, 3),
                        round(rfi, 4),
                        nbytes,
                        self.max_dm[b],
                        cands,
                        {},
                    )
                )
                n += 1
            self.next_pointing[b] = t
            total += n
            if n:
                self.add("head01", "pointing-recorder", "obs_pointings_total", n, beam=b)
        return total

    def _storage(self, start: datetime, end: datetime, dt: float, out: StepOutput) -> None:
        share = self.scale / max(1, len(self.storage))
        for st in self.storage:
            for product, per_day in (("l1", L1_BYTES_PER_DAY), ("rfi", RFI_BYTES_PER_DAY)):
                key = self._key(
                    st, "storage", "obs_storage_used_bytes", mount="/data", product=product
                )
                self.values[key] += per_day * share * dt / 86400.0
            used = sum(
                self.value(st, "storage", "obs_storage_used_bytes", mount="/data", product=p)
                for p in ("l1", "rfi", "hhat")
            )
            if used > 0.9 * self.capacity:  # the retention job deletes the oldest L1 data
                key = self._key(
                    st, "storage", "obs_storage_used_bytes", mount="/data", product="l1"
                )
                freed = used - 0.65 * self.capacity
                self.values[key] = max(0.0, self.values[key] - freed)
                out.events.append(("storage.cleanup", {"host": st, "freed_bytes": int(freed)}))
        if start.hour != end.hour or start.date() != end.date():
            hour = end.replace(minute=0, second=0, microsecond=0)
            for b in self.beams:
                st = self.storage[b % len(self.storage)] if self.storage else "head01"
                for kind, per_day in (("l1", L1_BYTES_PER_DAY), ("rfi", RFI_BYTES_PER_DAY)):
                    name = f"{kind}/{hour:%Y/%m/%d/%H}/beam{b:04d}"
                    out.products.append(
                        {
                            "kind": kind,
                            "name": name,
                            "host": st,
                            "path": f"/data/{name}.h5",
                            "size_bytes": int(per_day / REAL_BEAMS / 24),
                            "time_start": hour - timedelta(hours=1),
                            "time_end": hour,
                            "state": "complete",
                        }
                    )

    def _host_load(self, t: datetime) -> None:
        """CPU, load, memory and disk of each simulated host, following its work."""
        busy_batch = self.value("batch01", "hhat-worker", "obs_hhat_workers_busy") / HHAT_WORKERS
        for sh in self.hosts:
            base = {
                "compute": 0.55 * sky_factor(t),
                "storage": 0.25,
                "batch": 0.1 + 0.8 * busy_batch,
            }
            cpu = min(1.0, max(0.0, base.get(sh.role, 0.15) + self.rng.gauss(0, 0.03)))
            self.set(sh.name, "", "obs_host_cpu_usage_ratio", cpu, cpu="total")
            for name, lag in (
                ("obs_host_load1", 0.0),
                ("obs_host_load5", 0.05),
                ("obs_host_load15", 0.1),
            ):
                self.set(sh.name, "", name, round(cpu * HOST_CORES * (1 - lag), 2))
            used = HOST_MEMORY * (0.3 + 0.5 * cpu)
            self.set(sh.name, "", "obs_host_memory_used_bytes", used)
            disk = HOST_DISK * 0.42
            filling = self.fault("disk-filling", sh.name)
            if filling is not None:  # to 95% of the free space at the fault's end
                disk += 0.95 * (HOST_DISK - disk) * filling.progress(self.wall())
            self.set(sh.name, "", "obs_host_filesystem_used_bytes", disk, mount="/")
            skew = CLOCK_SKEW_FAULT if self.fault("clock-skew", sh.name) else 0.0
            offset = round(skew + self.rng.gauss(0, 0.002), 6)
            self.set(sh.name, "", "obs_host_clock_offset_seconds", offset)
        totals: dict[str, float] = {}
        for b in self.beams:  # the L1 stream arrives over the compute node's network
            h = self.beam_host[b]
            rx = self.value(h, "l1", "obs_l1_received_bytes_total", beam=b)
            totals[h] = totals.get(h, 0.0) + rx
        for h, total in totals.items():
            key = self._key(h, "", "obs_host_network_received_bytes_total", interface="eth0")
            self.values[key] = total

    def _transfers(self, start: datetime, end: datetime, dt: float, out: StepOutput) -> None:
        """Products queue on each storage node and go to the archive, oldest first."""
        inflow = (L1_BYTES_PER_DAY + RFI_BYTES_PER_DAY) * self.scale / max(1, len(self.storage))
        labels = {"destination": TRANSFER_DEST}
        for st in self.storage:
            queue = self.transfer_queue[st]
            queue.append([start, inflow * dt / 86400.0])
            stalled = self.fault("transfer-stall", st) is not None
            moving = not stalled and self.component_up(st, "storage")
            budget = inflow * TRANSFER_HEADROOM * dt / 86400.0 if moving else 0.0
            sent = 0.0
            while queue and budget > 0:
                take = min(budget, queue[0][1])
                queue[0][1] -= take
                budget -= take
                sent += take
                if queue[0][1] <= 1e-6:
                    queue.pop(0)
            self.add(st, "storage", "obs_transfer_sent_bytes_total", sent, **labels)
            self.transfer_done[st] += sent
            queued = sum(chunk[1] for chunk in queue)
            self.set(st, "storage", "obs_transfer_queued_bytes", queued, **labels)
            oldest = (end - queue[0][0]).total_seconds() if queue else 0.0
            self.set(st, "storage", "obs_transfer_oldest_queued_seconds", oldest, **labels)

    def _summaries(self, start: datetime, end: datetime, out: StepOutput) -> None:
        """A few events a simulated minute (at most one of each per step), whatever the speed."""
        if int(start.timestamp() // 60) == int(end.timestamp() // 60):
            return
        if self.summary["pointings"]:
            out.events.append(
                (
                    "pipeline.pointings_recorded",
                    {
                        "host": "head01",
                        "pointings": int(self.summary["pointings"]),
                        "candidates": int(self.summary["candidates"]),
                    },
                )
            )
            self.summary = {"pointings": 0, "candidates": 0}
        if int(start.timestamp() // 300) == int(end.timestamp() // 300):
            return
        for st, sent in self.transfer_done.items():
            if sent > 0:
                payload = {"host": st, "destination": TRANSFER_DEST, "bytes": int(sent)}
                out.events.append(("transfer.done", payload))
            self.transfer_done[st] = 0.0

    def _hhat(
        self, start: datetime, end: datetime, dt: float, out: StepOutput, pointings: int
    ) -> None:
        """The backlog grows with the data and drains while a batch run works on it.

        Each beam's pointings accrue to its daily stack (one stack per beam-day of data); a
        run starts on the hour when anything is pending and works until the backlog is empty.
        """

        def pending(stack: str) -> float:
            return self.value("batch01", "hhat-worker", "obs_hhat_stacks_pending", stack=stack)

        def put(stack: str, v: float) -> None:
            self.set("batch01", "hhat-worker", "obs_hhat_stacks_pending", v, stack=stack)

        per_beam_day = 86400.0 / self.pointing_s
        put("daily", pending("daily") + pointings / per_beam_day)
        if start.date() != end.date():  # a new day: the cumulative stack, monthly ones on the 1st
            put("cumulative", pending("cumulative") + 1)
            if end.day == 1:
                put("monthly", pending("monthly") + len(self.beams))
            self.day_closed = (end - timedelta(days=1)).date()
        total = sum(pending(s) for s in STACKS)
        working = self.component_up("batch01", "hhat-worker")
        if self.hhat_started is None and total > 0 and working and start.hour != end.hour:
            self.hhat_started = end
            out.events.append(
                ("batch.hhat_run_started", {"host": "batch01", "pending": round(total, 2)})
            )
        if self.hhat_started is None or not working:
            self.set("batch01", "hhat-worker", "obs_hhat_workers_busy", 0.0)
            return
        rate = HHAT_WORKERS / 1200.0  # each worker needs ~20 min per stack
        budget = rate * dt
        for stack in STACKS:
            p = pending(stack)
            if p <= 0 or budget <= 0:
                continue
            done = min(p, budget)
            budget -= done
            put(stack, p - done)
            before = self.value(
                "batch01", "hhat-worker", "obs_hhat_stacks_processed_total", stack=stack
            )
            self.add("batch01", "hhat-worker", "obs_hhat_stacks_processed_total", done, stack=stack)
            whole = int(before + done) - int(before)
            for _ in range(whole):
                b = self.rng.choice(self.beams)
                self.add(
                    "batch01", "hhat-worker", "obs_candidates_total", self.rng.randint(0, 3), beam=b
                )
        self.set("batch01", "hhat-worker", "obs_hhat_workers_busy", float(HHAT_WORKERS))
        if sum(pending(s) for s in STACKS) > 0:
            return
        duration = (end - self.hhat_started).total_seconds()
        self.hhat_started = None
        out.jobs.append(("hhat-daily-stack", duration))
        out.events.append(("batch.hhat_run_done", {"host": "batch01", "seconds": duration}))
        if self.day_closed is None:
            return
        day, self.day_closed = self.day_closed, None
        out.events.append(
            ("pipeline.hhat_daily_done", {"stacks": len(self.beams), "seconds": duration})
        )
        for b in self.beams:
            name = f"hhat_daily/{day:%Y/%m/%d}/beam{b:04d}"
            out.products.append(
                {
                    "kind": "hhat_daily",
                    "name": name,
                    "host": self.storage[b % len(self.storage)] if self.storage else "batch01",
                    "path": f"/data/{name}.npy",
                    "size_bytes": 64 * 1024 * 1024,
                    "time_start": datetime(day.year, day.month, day.day, tzinfo=UTC),
                    "time_end": datetime(day.year, day.month, day.day, tzinfo=UTC)
                    + timedelta(days=1),
                    "state": "complete",
                }
            )

    # -- logs --------------------------------------------------------------------------------
    def _logs(self, start: datetime, end: datetime, dt: float, out: StepOutput, stamp: Any) -> None:
        """Each component's own chatter, rare errors, and bursts while a fault hits it."""
        rng = self.log_rng
        for sh in self.hosts:
            if self.host_down(sh.name):
                continue  # a dead host writes nothing
            host, comp = sh.name, sh.component

            def line(level: str, msg: str, c: str = comp, h: str = host, **fields: Any) -> None:
                t = start + timedelta(seconds=rng.uniform(0, dt))
                out.logs.append((stamp(t), h, c, level, msg, fields))

            for f in self.faults:
                if f.host == host:
                    self._fault_lines(f, sh, line, dt)
            if not self.component_up(host, comp):
                continue
            info, warn, err = LOG_RATES.get(comp, (2.0, 0.5, 0.5))
            for level, per_minute in (("INFO", info), ("WARNING", warn), ("ERROR", err / 60)):
                for _ in range(_poisson(rng, per_minute * dt / 60.0, LOG_CAP)):
                    msg, fields = _chatter(rng, sh, level, self.beams)
                    line(level, msg, **fields)

    def _fault_lines(self, f: Fault, sh: SimHost, line: Callable[..., None], dt: float) -> None:
        first = f.id not in self._announced
        self._announced.add(f.id)
        rng = self.log_rng
        burst = _poisson(rng, 6.0 * dt / 60.0, LOG_CAP)  # ~6 a minute while the fault lasts
        if f.kind == "component-crash":
            comp = f.component or sh.component
            if first:
                line("ERROR", f"{comp}: process exited on signal 11 (core dumped)", c=comp)
            for _ in range(burst):
                line("ERROR", f"systemd: {comp}.service: start request repeated too quickly")
        elif f.kind == "packet-loss":
            for _ in range(burst):
                b = rng.choice(sh.beams) if sh.beams else 0
                line(
                    "ERROR" if first else "WARNING",
                    f"beam {b}: dropped {rng.randint(200, 900)} packets in the last second "
                    f"(NIC rx ring full), loss fraction {PACKET_LOSS_FAULT}",
                    beam=b,
                )
                first = False
        elif f.kind == "disk-filling":
            used = self.value(sh.name, "", "obs_host_filesystem_used_bytes", mount="/")
            if first or burst:
                line("WARNING", f"/ is {100 * used / HOST_DISK:.0f}% full", c="system")
            for _ in range(burst // 2):
                line("ERROR", "/var/log/l1-debug.log grows 40 MB/s (debug logging left on)")
        elif f.kind == "transfer-stall":
            for _ in range(burst):
                line(
                    "ERROR",
                    f"transfer to {TRANSFER_DEST}: connection timed out after 60 s, retrying",
                )
        elif f.kind == "clock-skew" and (first or burst):
            line(
                "ERROR" if first else "WARNING",
                f"chronyd: no selectable sources, clock offset {CLOCK_SKEW_FAULT} s",
                c="system",
            )


def _poisson(rng: random.Random, lam: float, cap: int) -> int:
    """A Poisson draw (Knuth), capped."""
    if lam <= 0:
        return 0
    if lam > 30:
        return min(cap, max(0, round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit and k < cap:
        k += 1
        p *= rng.random()
    return k


def _chatter(
    rng: random.Random, sh: SimHost, level: str, beams: list[int]
) -> tuple[str, dict[str, Any]]:
    """One everyday log line of the host's component."""
    b = rng.choice(sh.beams or tuple(beams) or (0,))
    comp = sh.component
    if comp == "l1":
        msgs = {
            "INFO": f"beam {b}: block {rng.randint(10**5, 10**6)} processed in "
            f"{rng.uniform(0.3, 0.9):.2f} s",
            "WARNING": rng.choice(
                (
                    f"beam {b}: RFI mask covers {rng.randint(25, 45)}% of channels",
                    f"beam {b}: ring buffer {rng.randint(70, 90)}% full",
                    f"beam {b}: late packet batch, {rng.randint(50, 400)} ms behind",
                )
            ),
            "ERROR": f"beam {b}: {rng.randint(1, 40)} packets failed CRC, block dropped",
        }
        return msgs[level], {"beam": b}
    if comp == "storage":
        msgs = {
            "INFO": f"wrote {rng.randint(2, 40)} files to /data ({rng.uniform(1, 9):.1f} GB)",
            "WARNING": f"slow fsync on /data ({rng.randint(200, 2000)} ms)",
            "ERROR": f"checksum mismatch on beam{b:04d}.h5, re-queued for transfer",
        }
    elif comp == "pointing-recorder":
        msgs = {
            "INFO": f"beam {b}: pointing metadata stored",
            "WARNING": f"beam {b}: telescope status arrived {rng.uniform(1, 8):.1f} s late",
            "ERROR": "telescope control: status query timed out after 10 s",
        }
    else:
        msgs = {
            "INFO": f"worker {rng.randint(1, HHAT_WORKERS)}: stack of beam {b} checked",
            "WARNING": f"beam {b}: {rng.randint(1, 12)} spectra missing, stacking the rest",
            "ERROR": f"worker {rng.randint(1, HHAT_WORKERS)}: out of memory, stack re-queued",
        }
    return msgs[level], {"beam": b} if level != "ERROR" or comp != "pointing-recorder" else {}
