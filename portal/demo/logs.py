"""The simulator's own log files: JSON lines per simulated host, shipped by the real shipper.

They land in ``<data_dir>/log/demo/<host>.log``, which the log shipper reads by default, so
``make run`` exercises tailing, parsing and the log store exactly as a real host would. Every
simulated host logs: its component's everyday lines, warnings and rare errors at the rates of
``model.LOG_RATES``, and bursts while a fault (``portal demo fault``) hits it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from portal.demo.model import StepOutput


class DemoLogs:
    """One append-only JSON-lines file per simulated host."""

    def __init__(self, directory: Path, beam_host: dict[int, str]) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.beam_host = beam_host
        self._files: dict[str, IO[str]] = {}

    def write(
        self, t: datetime, host: str, component: str, level: str, msg: str, **fields: Any
    ) -> None:
        fh = self._files.get(host)
        if fh is None:
            fh = self._files[host] = open(self.directory / f"{host}.log", "a")  # noqa: SIM115
        record = {
            "time": t.isoformat(),
            "level": level,
            "host": host,
            "component": component,
            "msg": msg,
            **fields,
        }
        fh.write(json.dumps(record, default=str) + "\n")

    def step(self, out: StepOutput) -> None:
        """Log what a simulation step produced, the way the pipeline components would."""
        for t, beam, ra, dec, _dur, rfi, nbytes, max_dm, cands, _flags in out.pointings:
            host = self.beam_host.get(beam, "head01")
            self.write(
                t,
                host,
                "l1",
                "INFO",
                f"beam {beam}: pointing ra={ra:.3f} dec={dec:.3f} rfi_masked={rfi:.3f} "
                f"bytes={nbytes} max_dm={max_dm} candidates={cands}",
                beam=beam,
            )
        for t, beam, kind, value, payload in out.beam_events:
            host = payload.get("host") or self.beam_host.get(beam, "head01")
            if kind == "packet_loss":
                self.write(
                    t,
                    host,
                    "l1",
                    "WARNING",
                    f"beam {beam}: dropped packets ({payload.get('reason', '?')}), "
                    f"loss fraction {value}",
                    beam=beam,
                )
            else:
                self.write(t, host, "l1", "INFO", f"beam {beam}: {kind} -> {value}", beam=beam)
        for t, host, component, level, msg, fields in sorted(out.logs, key=lambda r: r[0]):
            self.write(t, host, component, level, msg, **fields)
        for topic, payload in out.events:
            host = str(payload.get("host", "head01"))
            self.write(
                datetime.now().astimezone(),
                host,
                topic.split(".")[0],
                "INFO",
                f"{topic} {json.dumps(payload, default=str)}",
            )
        for fh in self._files.values():
            fh.flush()

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()
