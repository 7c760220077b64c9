"""Backfill the local Prometheus with seeded history: OpenMetrics -> ``promtool`` blocks.

``promtool tsdb create-blocks-from openmetrics`` turns the seed's samples into TSDB blocks;
moved into the running Prometheus' data directory, they are loaded at its next block reload
(about a minute), without a restart. History older than Prometheus' retention is dropped.
The dashboards' recording rules are then evaluated over that history (``record_rules``), so
panels reading recorded series show it too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from portal.errors import PortalError
from portal.settings import Settings

#: Backfilled series get the scrape job's label, so ``{job="collectors"}`` selects them too.
JOB = "collectors"


def tsdb_dir(cfg: Settings) -> Path:
    """Where ``portal stack up`` keeps the local Prometheus' TSDB."""
    return cfg.data_dir / "prometheus" / "tsdb"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def check_prometheus(cfg: Settings) -> tuple[Path, str]:
    """The local TSDB directory and promtool, or one sentence saying what is missing."""
    target = tsdb_dir(cfg)
    if not target.is_dir():
        raise PortalError(
            f"no local Prometheus TSDB at {target}: run `portal stack up` first "
            "(only a Prometheus started by the stack can be backfilled)"
        )
    promtool = shutil.which("promtool")
    if promtool is None:
        raise PortalError("promtool not found: install the Debian package prometheus")
    return target, promtool


class OpenMetricsFile:
    """Samples grouped per metric family (OpenMetrics requires that), then one file."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="obsportal-backfill-"))
        self._files: dict[str, IO[str]] = {}
        self._kinds: dict[str, str] = {}
        self.samples = 0

    def add(
        self, name: str, kind: str, host: str, comp: str, labels: dict, value: float, ts: float
    ) -> None:
        family = name.removesuffix("_total") if kind == "counter" else name
        fh = self._files.get(family)
        if fh is None:
            fh = self._files[family] = open(self.dir / f"{family}.part", "w")  # noqa: SIM115
            self._kinds[family] = kind
        pairs = {"job": JOB, "host": host, **({"component": comp} if comp else {}), **labels}
        text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs.items())
        fh.write(f"{name}{{{text}}} {value!r} {ts:.3f}\n")
        self.samples += 1

    def write(self) -> Path:
        """Concatenate the families into one OpenMetrics file ending in ``# EOF``."""
        path = self.dir / "seed.om"
        with open(path, "w") as out:
            for family, fh in self._files.items():
                fh.close()
                out.write(f"# TYPE {family} {self._kinds[family]}\n")
                with open(self.dir / f"{family}.part") as part:
                    shutil.copyfileobj(part, out)
            out.write("# EOF\n")
        return path

    def to_prometheus(self, cfg: Settings) -> int:
        """Build blocks with promtool and move them into the local TSDB; returns blocks."""
        target, promtool = check_prometheus(cfg)
        source = self.write()
        # build next to the TSDB (same file system), so each block appears by one rename
        blocks = Path(tempfile.mkdtemp(prefix=".backfill-", dir=target.parent))
        result = subprocess.run(
            [
                promtool,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=24h",
                str(source),
                str(blocks),
            ],
            capture_output=True,
            text=True,
        )
        try:
            if result.returncode != 0:
                detail = (result.stderr or result.stdout).strip().splitlines()
                raise PortalError(
                    f"promtool could not build blocks: {detail[-1] if detail else '?'}"
                )
            moved = 0
            for block in sorted(blocks.iterdir()):
                if block.is_dir():
                    os.rename(block, target / block.name)
                    moved += 1
            return moved
        finally:
            shutil.rmtree(blocks, ignore_errors=True)

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        shutil.rmtree(self.dir, ignore_errors=True)


#: how long the live Prometheus may take to load new blocks (it looks about once a minute)
LOAD_WAIT_S = 150.0


def record_rules(cfg: Settings, start: datetime, end: datetime) -> tuple[int, str]:
    """The dashboards' recording rules over backfilled history, as if Prometheus had been up
    then: once the live Prometheus has loaded the raw blocks, promtool evaluates the rules
    through it and the blocks it writes are moved into the TSDB. (blocks, what happened)."""
    from portal.grafana.sample_data import recording_rule_blocks
    from portal.metrics.client import Prometheus
    from portal.stack.process import wait_until

    prom = Prometheus(cfg.prometheus_url, timeout=10)
    if not prom.healthy():
        return 0, "recorded series not backfilled: the local Prometheus does not answer"
    first = start + timedelta(hours=1)

    def loaded() -> bool:
        try:
            return bool(prom.query_range(f'count({{job="{JOB}"}})', start, first, 300))
        except PortalError:
            return False

    if not wait_until(loaded, LOAD_WAIT_S, interval=2.0):
        return 0, "recorded series not backfilled: Prometheus did not load the history in time"
    target, _ = check_prometheus(cfg)
    out = Path(tempfile.mkdtemp(prefix=".rules-", dir=target.parent))
    try:
        blocks = recording_rule_blocks(cfg.prometheus_url, start, end, out)
        for block in blocks:
            os.rename(block, target / block.name)
        return len(blocks), f"{len(blocks)} blocks of recorded series added"
    finally:
        shutil.rmtree(out, ignore_errors=True)
