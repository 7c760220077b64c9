"""The scheduler's settings (declared through ``register_settings``) as one typed value."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portal.settings import Setting, Settings, _float, _int, _optional_path, _text

SPECS = (
    Setting(
        "PORTAL_SCHED_ACTUATOR",
        "portal.sched.actuator:slurm",
        _text,
        "module:factory of the orchestrator the scheduler drives (Slurm; see "
        "docs/scheduling.md for others).",
    ),
    Setting(
        "PORTAL_SCHED_SLURM_CONF",
        "",
        _optional_path,
        "slurm.conf the scheduler drives; empty: the local cluster's (data dir) when it "
        "runs, else Slurm's default.",
    ),
    Setting("PORTAL_SCHED_PARTITION", "batch", _text, "Slurm partition of batch work."),
    Setting(
        "PORTAL_SCHED_REALTIME_PARTITION",
        "realtime",
        _text,
        "Slurm partition of real-time work (never preempted).",
    ),
    Setting(
        "PORTAL_SCHED_POLL_SECONDS",
        "5",
        _float(0.2, 3600),
        "How often the scheduler compares backlog and free batch capacity.",
    ),
    Setting(
        "PORTAL_SCHED_MIN_JOBS",
        "0",
        _int(0, 100000),
        "Batch jobs kept submitted while there is backlog, even without free capacity.",
    ),
    Setting(
        "PORTAL_SCHED_MAX_JOBS",
        "200",
        _int(1, 100000),
        "Most batch jobs submitted at once (running plus pending).",
    ),
    Setting(
        "PORTAL_SCHED_MAX_PENDING",
        "2",
        _int(0, 10000),
        "Jobs kept pending beyond free capacity, so a freed slot is refilled at once.",
    ),
    Setting(
        "PORTAL_SCHED_COOLDOWN_SECONDS",
        "30",
        _float(0, 86400),
        "Least time between two scale-in steps (cancelling surplus pending jobs).",
    ),
    Setting(
        "PORTAL_SCHED_STABILIZATION_SECONDS",
        "60",
        _float(0, 86400),
        "Scale-in follows the highest wanted job count over this window.",
    ),
    Setting(
        "PORTAL_SCHED_AGE_WEIGHT",
        "1",
        _float(0, 1e6),
        "Priority points a queued item gains per hour of waiting.",
    ),
    Setting(
        "PORTAL_SCHED_STANDIN_SECONDS",
        "5",
        _float(0, 86400),
        "Run time of the stand-in job of a work kind registered without a command.",
    ),
    Setting(
        "PORTAL_SCHED_LOCAL_CPUS",
        "8",
        _int(1, 4096),
        "CPUs the local demo/test Slurm node declares (may exceed the machine's).",
    ),
    Setting(
        "PORTAL_SCHED_LOCAL_MEMORY_MB",
        "8192",
        _int(64, 10**8),
        "Memory the local Slurm node declares.",
    ),
)


@dataclass(frozen=True)
class Options:
    actuator: str
    slurm_conf: Path | None
    partition: str
    realtime_partition: str
    poll_seconds: float
    min_jobs: int
    max_jobs: int
    max_pending: int
    cooldown_seconds: float
    stabilization_seconds: float
    age_weight: float
    standin_seconds: float
    local_cpus: int
    local_memory_mb: int


def options(cfg: Settings) -> Options:
    """The scheduler's settings from ``cfg.extra`` (defaults when the plugin was not loaded)."""
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw = cfg.extra.get(spec.env)
        values[spec.field.removeprefix("sched_")] = (
            spec.value({}) if raw is None and spec.env not in cfg.extra else raw
        )
    return Options(**values)


def local_root(cfg: Settings) -> Path:
    """Where ``portal sched slurm`` keeps the local cluster (config, state, logs, PIDs)."""
    return cfg.data_dir / "slurm"


def slurm_conf(cfg: Settings) -> Path | None:
    """The slurm.conf to drive: the setting, else the running local cluster's, else None."""
    opts = options(cfg)
    if opts.slurm_conf is not None:
        return opts.slurm_conf
    local = local_root(cfg) / "slurm.conf"
    return local if (local_root(cfg) / "pids.json").exists() and local.exists() else None
