"""The simulated telescope: a small cluster whose numbers behave like the real pipeline's.

One model serves both ``demo run`` (live, through the telemetry library) and ``demo seed``
(history, straight to COPY): it advances simulated time and keeps every series' value, and
returns the side records (pointings, beam events, data products, events) each step produced.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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


@dataclass(frozen=True)
class SimHost:
    name: str
    role: str
    component: str
    kind: str  # real-time | batch
    beams: tuple[int, ...] = ()


def layout(compute_nodes: int = 8, beams_per_node: int = 4, storage_nodes: int = 2) -> list:
    """head01, cn01..cnNN (L1 beams), st01..stNN (storage), batch01 (Hhat workers)."""
    hosts = [SimHost("head01", "head", "pointing-recorder", "real-time")]
    for i in range(compute_nodes):
        beams = tuple(range(i * beams_per_node, (i + 1) * beams_per_node))
        hosts.append(SimHost(f"cn{i + 1:02d}", "compute", "l1", "real-time", beams))
    for i in range(storage_nodes):
        hosts.append(SimHost(f"st{i + 1:02d}", "storage", "storage", "real-time"))
    hosts.append(SimHost("batch01", "batch", "hhat-worker", "batch"))
    return hosts


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
        for sh in self.hosts:  # host-collector series (component ''), as on a real host
            self.set(sh.name, "", "obs_host_memory_total_bytes", HOST_MEMORY)
            self.set(sh.name, "", "obs_host_filesystem_size_bytes", HOST_DISK, mount="/")
            self.add(sh.name, "", "obs_host_network_received_bytes_total", 0.0, interface="eth0")
        self._host_load(self.now)

    def value(self, host: str, comp: str, name: str, **labels: object) -> float:
        return self.values[self._key(host, comp, name, **labels)]

    # -- time --------------------------------------------------------------------------------
    def step(self, seconds: float, to_real: Any = None) -> StepOutput:
        """Advance ``seconds`` of simulated time; ``to_real`` maps sim times to row times."""
        out = StepOutput()
        start, end = self.now, self.now + timedelta(seconds=seconds)
        stamp = to_real or (lambda t: t)
        self._l1(start, end, seconds, out, stamp)
        self._pointings(end, out, stamp)
        self._storage(start, end, seconds, out)
        self._hhat(start, end, seconds, out)
        self._host_load(end)
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
            packets = got / PACKET_BYTES
            if self.loss_until[b] <= mid and rng.random() < dt / (86400.0 * 2):
                self.loss_until[b] = mid + timedelta(minutes=rng.uniform(5, 30))
                self.burst_lag[b] = rng.choice((20.0, 20.0, 20.0, 90.0))  # some fall far behind
                out.beam_events.append(
                    (stamp(mid), b, "packet_loss", 0.02, {"host": h, "reason": "switch port flap"})
                )
            loss = 0.02 if self.loss_until[b] > mid else 2e-5
            self.add(h, "l1", "obs_l1_received_bytes_total", got, beam=b)
            self.add(h, "l1", "obs_l1_packets_received_total", round(packets * (1 - loss)), beam=b)
            self.add(h, "l1", "obs_l1_packets_lost_total", round(packets * loss), beam=b)
            self.set(h, "l1", "obs_l1_rfi_masked_ratio", rfi_ratio(mid, rng), beam=b)
            lag = abs(rng.gauss(0.8, 0.3)) + (self.burst_lag[b] if self.loss_until[b] > mid else 0)
            self.set(h, "l1", "obs_l1_lag_seconds", lag, beam=b)
            if rng.random() < dt / (6 * 3600.0):  # a DM adjustment every ~6 h per beam
                old = self.max_dm[b]
                new = round(min(5000.0, max(500.0, old * rng.choice((0.8, 1.25)))), 1)
                self.max_dm[b] = new
                self.add(h, "l1", "obs_l1_dm_adjustments_total", 1, beam=b)
                payload = {"old": old, "new": new, "host": h}
                out.beam_events.append((stamp(mid), b, "dm_adjust", new, payload))
                out.events.append(("pipeline.beam_dm_adjusted", {"beam": b, **payload}))

    def _pointings(self, end: datetime, out: StepOutput, stamp: Any) -> None:
        rng = self.rng
        for b in self.beams:
            t = self.next_pointing[b]
            n = 0
            while t < end:
                lst = sidereal_hours(t)
                rfi = rfi_ratio(t, rng)
                nbytes = int(
                    L1_BYTES_PER_DAY / 86400 / REAL_BEAMS * self.pointing_s * sky_factor(t)
                )
                cands = rng.choice((0, 0, 0, 0, 1, 1, 2, 3))
                out.pointings.append(
                    (
                        stamp(t),
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
                t += timedelta(seconds=self.pointing_s)
            self.next_pointing[b] = t
            if n:
                self.add("head01", "pointing-recorder", "obs_pointings_total", n, beam=b)

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
            self.set(sh.name, "", "obs_host_filesystem_used_bytes", HOST_DISK * 0.42, mount="/")
        totals: dict[str, float] = {}
        for b in self.beams:  # the L1 stream arrives over the compute node's network
            h = self.beam_host[b]
            rx = self.value(h, "l1", "obs_l1_received_bytes_total", beam=b)
            totals[h] = totals.get(h, 0.0) + rx
        for h, total in totals.items():
            key = self._key(h, "", "obs_host_network_received_bytes_total", interface="eth0")
            self.values[key] = total

    def _hhat(self, start: datetime, end: datetime, dt: float, out: StepOutput) -> None:
        def pending(stack: str) -> float:
            return self.value("batch01", "hhat-worker", "obs_hhat_stacks_pending", stack=stack)

        def put(stack: str, v: float) -> None:
            self.set("batch01", "hhat-worker", "obs_hhat_stacks_pending", v, stack=stack)

        if start.date() != end.date():  # a new day: every beam's daily stack waits
            put("daily", pending("daily") + len(self.beams))
            put("cumulative", pending("cumulative") + 1)
            if end.day == 1:
                put("monthly", pending("monthly") + len(self.beams))
            self.hhat_started = end
        rate = HHAT_WORKERS / 1200.0  # each worker needs ~20 min per stack
        budget = rate * dt
        busy = 0.0
        for stack in STACKS:
            p = pending(stack)
            if p <= 0 or budget <= 0:
                continue
            done = min(p, budget)
            budget -= done
            busy = HHAT_WORKERS
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
            if stack == "daily" and p - done <= 0 and self.hhat_started is not None:
                duration = (end - self.hhat_started).total_seconds()
                out.jobs.append(("hhat-daily-stack", duration))
                out.events.append(
                    ("pipeline.hhat_daily_done", {"stacks": len(self.beams), "seconds": duration})
                )
                day = (end - timedelta(days=1)).date()
                for b in self.beams:
                    name = f"hhat_daily/{day:%Y/%m/%d}/beam{b:04d}"
                    out.products.append(
                        {
                            "kind": "hhat_daily",
                            "name": name,
                            "host": self.storage[b % len(self.storage)]
                            if self.storage
                            else "batch01",
                            "path": f"/data/{name}.npy",
                            "size_bytes": 64 * 1024 * 1024,
                            "time_start": datetime(day.year, day.month, day.day, tzinfo=UTC),
                            "time_end": datetime(day.year, day.month, day.day, tzinfo=UTC)
                            + timedelta(days=1),
                            "state": "complete",
                        }
                    )
                self.hhat_started = None
        self.set("batch01", "hhat-worker", "obs_hhat_workers_busy", busy)
