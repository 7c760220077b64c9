"""The one Slurm client: the command-line tools (``sbatch --parsable``, ``scancel``,
``squeue --json``, ``sinfo --json``, ``scontrol``).

The CLI rather than pyslurm: pyslurm must match the exact Slurm release and build against its
headers, so every Slurm upgrade on the cluster would break the portal's wheel; the JSON output
of ``squeue``/``sinfo`` (OpenAPI v0.0.38 on 22.05) is stable across minor releases. Every call
has a time limit and a failure is one ``SlurmError`` sentence naming the command.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from portal.errors import PortalError

#: Job name prefix of work the portal submits: ``obs-work-<id>`` (the idempotency key).
PREFIX = "obs-work-"
ACTIVE = (
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
)
FAILED = (
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
)


LIMIT_TTL = 30.0


class SlurmError(PortalError):
    """A Slurm command failed or is not installed."""


@dataclass(frozen=True)
class Job:
    """One job as ``squeue --json`` reports it."""

    id: int
    name: str
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, ...
    reason: str  # Slurm's pending reason (Resources, Priority, BeginTime, ...) or "None"
    partition: str
    cpus: int
    memory_mb: int
    submitted: datetime | None
    started: datetime | None
    ended: datetime | None
    nodes: str
    exit_code: int
    requeued: int  # how often Slurm requeued it (preemption)
    comment: str

    @property
    def work_id(self) -> int | None:
        """The work item behind a job the portal submitted, from its name."""
        if not self.name.startswith(PREFIX):
            return None
        head = self.name.removeprefix(PREFIX).split("-", 1)[0]
        return int(head) if head.isdigit() else None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


@dataclass(frozen=True)
class Node:
    """One node as ``sinfo --json`` reports it."""

    name: str
    state: str  # idle, mixed, allocated, down, drained, draining, ...
    flags: tuple[str, ...]
    cpus: int
    alloc_cpus: int
    memory_mb: int
    alloc_memory_mb: int
    reason: str
    partitions: tuple[str, ...]

    @property
    def drained(self) -> bool:
        """Takes no new job: drained or draining (by an operator), down or failed."""
        words = {self.state.lower(), *(f.lower() for f in self.flags)}
        return bool(words & {"drain", "drained", "draining", "down", "fail", "failing"})


def _time(raw: Any) -> datetime | None:
    if not isinstance(raw, int | float) or raw <= 0:
        return None
    return datetime.fromtimestamp(raw, UTC)


def _memory(raw: dict[str, Any]) -> int:
    per_node = raw.get("memory_per_node")
    if isinstance(per_node, int):
        return per_node
    per_cpu = raw.get("memory_per_cpu")
    return int(per_cpu or 0) * int(raw.get("cpus") or 1)


def _job(raw: dict[str, Any]) -> Job:
    return Job(
        id=int(raw["job_id"]),
        name=str(raw.get("name") or ""),
        state=str(raw.get("job_state") or "UNKNOWN"),
        reason=str(raw.get("state_reason") or "None"),
        partition=str(raw.get("partition") or ""),
        cpus=int(raw.get("cpus") or 0),
        memory_mb=_memory(raw),
        submitted=_time(raw.get("submit_time")),
        started=_time(raw.get("start_time")) if raw.get("job_state") != "PENDING" else None,
        ended=_time(raw.get("end_time")) if raw.get("job_state") not in ACTIVE else None,
        nodes=str(raw.get("nodes") or ""),
        exit_code=int(raw.get("exit_code") or 0),
        requeued=int(raw.get("restart_cnt") or 0),
        comment=str(raw.get("comment") or ""),
    )


def _node(raw: dict[str, Any]) -> Node:
    return Node(
        name=str(raw["name"]),
        state=str(raw.get("state") or "unknown"),
        flags=tuple(str(f) for f in raw.get("state_flags") or ()),
        cpus=int(raw.get("cpus") or 0),
        alloc_cpus=int(raw.get("alloc_cpus") or 0),
        memory_mb=int(raw.get("real_memory") or 0),
        alloc_memory_mb=int(raw.get("alloc_memory") or 0),
        reason=str(raw.get("reason") or ""),
        partitions=tuple(str(p) for p in raw.get("partitions") or ()),
    )


class Slurm:
    """Drives one cluster; ``conf`` is its slurm.conf (None: the clients' default)."""

    def __init__(
        self,
        conf: Path | None = None,
        timeout: float = 20.0,
        locate: Callable[[], Path | None] | None = None,
    ) -> None:
        self.conf = conf
        self.timeout = timeout
        self.locate = locate  # looked up on each call: a local cluster may start later
        self._limits: dict[str, tuple[float, int | None]] = {}

    def _run(self, args: Sequence[str]) -> str:
        env = dict(os.environ)
        conf = self.locate() if self.locate is not None else self.conf
        if conf is not None:
            env["SLURM_CONF"] = str(conf)
        what = " ".join(args[:2])
        try:
            proc = subprocess.run(
                list(args), capture_output=True, text=True, env=env, timeout=self.timeout
            )
        except FileNotFoundError:
            raise SlurmError(
                f"{args[0]} is not installed: apt-get install -y slurm-wlm munge"
            ) from None
        except subprocess.TimeoutExpired:
            raise SlurmError(f"`{what}` did not answer within {self.timeout:.0f} s") from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise SlurmError(f"`{what}` failed: {detail[-1] if detail else proc.returncode}")
        return proc.stdout

    def _json(self, args: Sequence[str]) -> dict[str, Any]:
        out = self._run(args)
        try:
            doc: dict[str, Any] = json.loads(out)
        except ValueError:
            raise SlurmError(f"`{' '.join(args[:2])}` printed no JSON") from None
        return doc

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
        """``sbatch --parsable --wrap``: the new job's id; batch work is requeueable."""
        args = [
            "sbatch",
            "--parsable",
            f"--job-name={name}",
            f"--partition={partition}",
            f"--cpus-per-task={cpus}",
            f"--mem={memory_mb}M",
            f"--output={output}",
            "--requeue",
            f"--wrap={command}",
        ]
        if comment:
            args.insert(-1, f"--comment={comment}")
        if time_limit_minutes:
            args.insert(-1, f"--time={time_limit_minutes}")
        out = self._run(args).strip().split(";")[0]
        if not out.isdigit():
            raise SlurmError(f"sbatch printed no job id: {out[:80]!r}")
        return int(out)

    def cancel(self, job_id: int) -> None:
        self._run(["scancel", str(job_id)])

    def jobs(self) -> list[Job]:
        """Every job slurmctld still knows (active ones and those finished within MinJobAge).

        ``squeue --json`` of 22.05 ignores ``--states`` and ``--jobs``: it always answers with
        every job, so nothing is filtered on the command line."""
        doc = self._json(["squeue", "--all", "--states=all", "--json"])
        return [_job(j) for j in doc.get("jobs", [])]

    def running_on(self, node: str) -> list[str]:
        """``id name`` of each job running on ``node`` (plain ``squeue``: its filters work)."""
        out = self._run(
            ["squeue", "--noheader", f"--nodelist={node}", "--states=RUNNING", "--format=%i %j"]
        )
        return [line.strip() for line in out.splitlines() if line.strip()]

    def nodes(self) -> list[Node]:
        return [_node(n) for n in self._json(["sinfo", "--json"]).get("nodes", [])]

    def partition(self, name: str) -> dict[str, str]:
        """``scontrol show partition NAME`` as key=value pairs (MaxCPUsPerNode, PriorityTier...)."""
        out = self._run(["scontrol", "show", "partition", name, "-o"])
        return dict(p.split("=", 1) for p in shlex.split(out) if "=" in p)

    def batch_cpu_limit(self, partition: str) -> int | None:
        """The partition's ``MaxCPUsPerNode``: what batch work may use of each node (read again
        after ``LIMIT_TTL`` seconds: it changes only when Slurm is reconfigured)."""
        cached = self._limits.get(partition)
        if cached is not None and time.monotonic() - cached[0] < LIMIT_TTL:
            return cached[1]
        raw = self.partition(partition).get("MaxCPUsPerNode", "")
        limit = int(raw) if raw.isdigit() else None
        self._limits[partition] = (time.monotonic(), limit)
        return limit

    def release_begin_time(self, job_id: int) -> None:
        """Make a requeued job eligible now (Slurm otherwise holds it for a fixed delay)."""
        self._run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"])

    def drain(self, node: str, reason: str) -> None:
        """``scontrol update nodename=N state=drain``: running jobs finish, none start."""
        if not reason.strip():
            raise SlurmError("draining a node needs a reason")
        self._run(["scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}"])

    def resume(self, node: str) -> None:
        self._run(["scontrol", "update", f"nodename={node}", "state=resume"])

    def ping(self) -> str:
        """``scontrol ping``: one line saying whether slurmctld answers."""
        return self._run(["scontrol", "ping"]).strip().splitlines()[0]
