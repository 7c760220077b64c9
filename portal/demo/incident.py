"""``portal demo incident``: a scripted 3 a.m. incident for training, played on the simulator.

The script is a timed sequence of faults (``portal.demo.faults``) with a line of narrative
each. It is played through the fault file, so a running ``portal demo run`` acts it out and
Prometheus raises the real alerts; the trainee works from the alerts, dashboards and logs.
``--speed`` compresses the script's time (waits and fault durations alike), not Prometheus'
``for:``: a compressed fault may clear before its alert fires. Faults the player injected are
cleared when it ends or is interrupted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from portal.demo import faults


@dataclass(frozen=True)
class Beat:
    at: float  # seconds after the start, in script time
    say: str
    kind: str = ""  # a fault to inject, or '' for narrative only
    target: str = ""
    lasts: float = 0.0  # script seconds


#: 03:00 on a quiet night: the archive link stalls, storage fills, a switch port flaps, an L1
#: process dies under the pressure and the head node's clock drifts; then the shift resolves it.
SCRIPT: tuple[Beat, ...] = (
    Beat(0, "03:00  Quiet night. The Galactic centre has set; the cluster hums along."),
    Beat(
        60,
        "03:01  The link from st01 to the archive stops moving data. Products start to queue.",
        "transfer-stall",
        "st01",
        45 * 60,
    ),
    Beat(
        5 * 60,
        "03:05  A debug log left on by yesterday's upgrade starts filling / on cn02.",
        "disk-filling",
        "cn02",
        40 * 60,
    ),
    Beat(
        10 * 60,
        "03:10  A switch port flaps: cn01's beams start losing packets and falling behind.",
        "packet-loss",
        "cn01",
        15 * 60,
    ),
    Beat(
        16 * 60,
        "03:16  Under the buffer pressure the L1 process on cn01 crashes.",
        "component-crash",
        "cn01/l1",
        8 * 60,
    ),
    Beat(
        20 * 60,
        "03:20  head01 loses its NTP sources; its clock drifts away.",
        "clock-skew",
        "head01",
        20 * 60,
    ),
    Beat(
        25 * 60,
        "03:25  The pager has gone off several times. Which alert do you work on first, and why?",
    ),
    Beat(
        30 * 60,
        "03:30  cn02 stops answering altogether: the full / took its collector down.",
        "host-down",
        "cn02",
        10 * 60,
    ),
    Beat(46 * 60, "03:46  Link restored, debug logging off, NTP back: everything recovers."),
)


def script_length(script: tuple[Beat, ...] = SCRIPT) -> float:
    return max(max(b.at, b.at + b.lasts) for b in script)


def play(
    file: Path,
    speed: float = 1.0,
    say: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    script: tuple[Beat, ...] = SCRIPT,
) -> list[faults.Fault]:
    """Play the script; returns the faults injected (all cleared again when it returns)."""
    stop = stop or threading.Event()
    injected: list[faults.Fault] = []
    t0 = time.monotonic()
    try:
        for beat in sorted(script, key=lambda b: b.at):
            if stop.wait(max(0.0, t0 + beat.at / speed - time.monotonic())):
                say("incident stopped early")
                return injected
            line = f"[T+{_clock(beat.at)}] {beat.say}"
            if beat.kind:
                fault = faults.inject(file, beat.kind, beat.target, beat.lasts / speed)
                injected.append(fault)
                alert = faults.KINDS[beat.kind].alert
                line += f"  (fault {beat.kind} {beat.target} for {_clock(beat.lasts)}: {alert})"
            say(line)
        end = t0 + script_length(script) / speed
        if stop.wait(max(0.0, end - time.monotonic())):
            say("incident stopped early")
            return injected
        say(f"[T+{_clock(script_length(script))}] incident over: every fault has cleared")
        return injected
    finally:
        for f in injected:
            faults.clear(file, f.kind, f.target)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"
