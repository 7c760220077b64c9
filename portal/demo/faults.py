"""Faults the simulator rehearses: ``portal demo fault KIND TARGET [--for 10m]``.

Active faults live in one JSON file, ``<PORTAL_DATA_DIR>/demo/faults.json``, replaced
atomically (write a temporary file, fsync, rename) under an ``flock`` so two commands never
lose each other's fault. ``portal demo run`` checks the file's modification time on every
tick and re-reads it when it changed.

Why a file and not an event on the event bus: a rehearsal must also work while PostgreSQL
is the thing being rehearsed (the simulator keeps running without a database), the file
survives a restart of the simulator with every fault and its end time intact, ``fault list``
and ``fault clear`` read and edit the same state the simulator obeys, and the simulator needs
no listener thread. Each fault carries its wall-clock end, so it clears by itself after
``--for`` without anyone running a command. Injecting and clearing are still audited and
announced on the event bus (``demo.fault_injected``, ``demo.fault_cleared``) by the CLI.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from portal.errors import PortalError


@dataclass(frozen=True)
class Kind:
    alert: str  # the rule in prometheus/rules/obsportal.yml it raises
    target: str  # what TARGET names
    effect: str  # what the simulator does while it is active
    default_for: float  # seconds: long enough for the alert to fire with the real `for:`


KINDS: dict[str, Kind] = {
    "host-down": Kind(
        "HostDown",
        "HOST",
        "the host's /metrics answers 503, so Prometheus records up 0; the host logs nothing",
        600,
    ),
    "component-crash": Kind(
        "ComponentDown",
        "HOST or HOST/COMPONENT",
        "obs_process_up of the component is 0 and its metrics and log lines stop",
        600,
    ),
    "packet-loss": Kind(
        "RealtimePacketLoss",
        "HOST (a compute node)",
        "5% of the L1 packets of every beam on the host are lost; lag rises to about 20 s",
        900,
    ),
    "disk-filling": Kind(
        "DiskFillsWithin24h",
        "HOST",
        "a runaway writer fills / steadily, to 95% of its free space at the fault's end; "
        "the space comes back when the fault clears",
        7200,
    ),
    "transfer-stall": Kind(
        "TransferStalled",
        "HOST (a storage node)",
        "transfers to the archive stop: obs_transfer_oldest_queued_seconds grows",
        3600,
    ),
    "clock-skew": Kind(
        "ClockSkew",
        "HOST",
        "the host's clock runs 2.5 s off (obs_host_clock_offset_seconds)",
        900,
    ),
}

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class Fault:
    id: str
    kind: str
    host: str
    component: str  # '' for host-level faults, or when it names the host's only component
    started: float  # wall clock (epoch seconds)
    until: float

    @property
    def target(self) -> str:
        return f"{self.host}/{self.component}" if self.component else self.host

    def active(self, now: float) -> bool:
        return self.started <= now < self.until

    def progress(self, now: float) -> float:
        """How far through its duration the fault is, 0..1."""
        span = max(1e-9, self.until - self.started)
        return min(1.0, max(0.0, (now - self.started) / span))


def parse_target(kind: str, raw: str) -> tuple[str, str]:
    """``HOST`` or ``HOST/COMPONENT`` (component only for component-crash), or one sentence."""
    if kind not in KINDS:
        raise PortalError(f"unknown fault kind {kind!r}: use one of {', '.join(KINDS)}")
    host, _, component = raw.strip().partition("/")
    if not _NAME.fullmatch(host) or (component and not _NAME.fullmatch(component)):
        raise PortalError(f"fault target {raw!r} is not HOST or HOST/COMPONENT")
    if component and kind != "component-crash":
        raise PortalError(f"a {kind} fault names a host, not a component: use {host}")
    return host, component


def path(data_dir: Path) -> Path:
    return data_dir / "demo" / "faults.json"


def _read(file: Path) -> list[Fault]:
    try:
        raw = json.loads(file.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise PortalError(f"cannot read the fault file {file} ({exc})") from None
    fields = set(Fault.__dataclass_fields__)
    return [Fault(**{k: v for k, v in f.items() if k in fields}) for f in raw.get("faults", [])]


def _write(file: Path, faults: list[Fault]) -> None:
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump({"faults": [asdict(f) for f in faults]}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, file)


@contextmanager
def _locked(file: Path) -> Iterator[list[Fault]]:
    """The current faults (expired ones dropped), written back when the block ends."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file.with_name(file.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = time.time()
        faults = [f for f in _read(file) if f.until > now]
        yield faults
        _write(file, faults)


def inject(file: Path, kind: str, target: str, seconds: float, start: float | None = None) -> Fault:
    """Add a fault lasting ``seconds`` from now; the same kind on the same target is replaced."""
    host, component = parse_target(kind, target)
    if not 0 < seconds <= 7 * 86400:
        raise PortalError(f"--for {seconds:g} s is out of range (more than 0, at most 7 days)")
    now = time.time() if start is None else start
    fault = Fault(uuid.uuid4().hex[:8], kind, host, component, now, now + seconds)
    with _locked(file) as faults:
        faults[:] = [f for f in faults if (f.kind, f.target) != (kind, fault.target)]
        faults.append(fault)
    return fault


def clear(file: Path, kind: str | None = None, target: str | None = None) -> list[Fault]:
    """End the matching active faults now (all without arguments); returns those ended."""
    if kind is not None and kind not in KINDS:
        raise PortalError(f"unknown fault kind {kind!r}: use one of {', '.join(KINDS)}")
    with _locked(file) as faults:
        ended = [
            f
            for f in faults
            if (kind is None or f.kind == kind) and (target is None or target in (f.target, f.host))
        ]
        faults[:] = [f for f in faults if f not in ended]
    return ended


def active(file: Path, now: float | None = None) -> list[Fault]:
    now = time.time() if now is None else now
    return [f for f in _read(file) if f.active(now)]


class FaultFile:
    """What the running simulator reads each tick: re-parsed only when the file changed."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self._stamp: tuple[int, int] | None = None
        self._faults: list[Fault] = []
        self._stopped: set[str] = set()  # hosts whose component a fault stopped

    def active(self, now: float | None = None) -> list[Fault]:
        now = time.time() if now is None else now
        try:
            st = self.file.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            try:
                self._faults = _read(self.file) if stamp else []
                self._stamp = stamp
            except PortalError:
                pass  # half-written by hand: keep the last good state, try again next tick
        return [f for f in self._faults if f.active(now)]

    def apply(self, live: Any) -> None:
        """Hand the active faults to the simulation; crashed components report process down.

        Only a process this file stopped is marked running again when its fault ends, so a
        component stopped some other way (``live.set_process_up``) stays stopped.
        """
        sim = live.sim
        sim.faults = self.active()
        for h in sim.hosts:
            down = not sim.component_up(h.name, h.component)
            if down and h.name not in self._stopped:
                self._stopped.add(h.name)
                live.set_process_up(h.name, False)
            elif not down and h.name in self._stopped:
                self._stopped.discard(h.name)
                live.set_process_up(h.name, True)


def describe(f: Fault, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "id": f.id,
        "kind": f.kind,
        "target": f.target,
        "alert": KINDS[f.kind].alert,
        "started": f.started,
        "until": f.until,
        "left_seconds": round(max(0.0, f.until - now), 1),
    }


def gate_scrapes(tel: Any, down: Any) -> None:
    """Make a telemetry object's /metrics answer 503 while ``down()`` is true (a dead host).

    The ``wsgiref`` server prometheus_client started for ``tel.serve`` gets its app wrapped
    once, at start-up; the simulator's hosts are the only users.
    """
    server = tel._servers[-1]
    app = server.get_app()

    def gated(environ: dict[str, Any], start_response: Any) -> Any:
        if down():
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"simulated host down (portal demo fault host-down)\n"]
        return app(environ, start_response)

    server.set_app(gated)
