"""A local single-node Slurm cluster (munged + slurmctld + slurmd) as child processes by PID.

Used by the tests, the benchmark and ``make run``; a site runs its own Slurm and takes only the
partition fragment (``site_fragment``) that ``portal sched config`` prints. The node may declare
more CPUs than the machine has (``SlurmdParameters=config_overrides``): batch payloads that sleep
do not need real cores, and a 2-core test machine can then hold a real-time share and a batch share.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from portal.errors import PortalError
from portal.stack import process

REALTIME = "realtime"
BATCH = "batch"
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")


def missing() -> str | None:
    """One sentence naming what is not installed, or None when a local Slurm can start."""
    gone = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if gone:
        return (
            f"Slurm is not installed ({', '.join(gone)} missing): "
            "apt-get install -y slurm-wlm munge"
        )
    return None


def _binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path("/usr/sbin", name).exists() else "")
    if not found:
        raise PortalError(missing() or f"{name} not found")
    return found


@dataclass(frozen=True)
class Shape:
    """What the cluster offers and how it is split between real-time and batch work."""

    cpus: int = 8
    memory_mb: int = 8192
    realtime_cpus: int = 2  # held for real-time work: the batch partition never uses them
    node: str = ""  # the node name; default: this host's short name

    @property
    def node_name(self) -> str:
        return self.node or socket.gethostname().split(".")[0]

    @property
    def batch_cpus(self) -> int:
        return self.cpus - self.realtime_cpus

    def check(self) -> None:
        if self.cpus < 1 or self.memory_mb < 64:
            raise PortalError(
                f"a node needs at least 1 CPU and 64 MB (got {self.cpus}, {self.memory_mb} MB)"
            )
        if not 0 <= self.realtime_cpus <= self.cpus:
            raise PortalError(
                f"real-time CPUs {self.realtime_cpus} must be between 0 and the node's {self.cpus}"
            )


def site_fragment(shape: Shape, nodes: str = "") -> str:
    """The partitions a site adds to its slurm.conf: real-time first, batch preempted by requeue.

    Real-time jobs (PriorityTier 100, never preempted) start at once on the CPUs the batch
    partition may not use (``MaxCPUsPerNode``); when they need more than declared they preempt
    batch jobs, which Slurm requeues (``PreemptMode=REQUEUE``) rather than kills.
    """
    where = nodes or shape.node_name
    return "\n".join(
        [
            "# obsportal scheduling: real-time work is never preempted; batch work is requeued",
            "PreemptType=preempt/partition_prio",
            "PreemptMode=REQUEUE",
            "JobRequeue=1",
            # real-time jobs also sort first inside one scheduling pass (job priority)
            "PriorityType=priority/multifactor",
            "PriorityWeightPartition=100000",
            f"PartitionName={REALTIME} Nodes={where} PriorityTier=100 PriorityJobFactor=65533 "
            "PreemptMode=OFF "
            "OverSubscribe=NO State=UP",
            f"PartitionName={BATCH} Nodes={where} Default=YES PriorityTier=1 PriorityJobFactor=1 "
            "PreemptMode=REQUEUE "
            f"MaxCPUsPerNode={max(shape.batch_cpus, 1)} OverSubscribe=NO State=UP",
            "",
        ]
    )


def config_text(root: Path, shape: Shape, ctld_port: int, slurmd_port: int) -> str:
    """A whole slurm.conf for one node under ``root`` (own ports, state dirs, munge socket)."""
    shape.check()
    lines = [
        "ClusterName=obsportal",
        f"SlurmctldHost={shape.node_name}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        f"AuthInfo=socket={root / 'munge.sock'}",
        "CredType=cred/munge",
        f"StateSaveLocation={root / 'ctld-state'}",
        f"SlurmdSpoolDir={root / 'slurmd-spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_min_interval=100000,batch_sched_delay=0,default_queue_depth=1000",
        "MinJobAge=3600",  # finished jobs stay visible to squeue: the scheduler reads outcomes
        "MaxJobCount=100000",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=60",
        "InactiveLimit=0",
        "KillWait=2",
        "DefMemPerCPU=256",
        f"NodeName={shape.node_name} NodeAddr=127.0.0.1 CPUs={shape.cpus} "
        f"RealMemory={shape.memory_mb} State=UNKNOWN",
        site_fragment(shape),
    ]
    return "\n".join(lines)


@dataclass
class Cluster:
    """A running local cluster: its config file and the PIDs of its three daemons."""

    root: Path
    conf: Path
    munged: int
    slurmctld: int
    slurmd: int

    @property
    def env(self) -> dict[str, str]:
        """Environment for the Slurm clients (``SLURM_CONF``)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def save(self) -> None:
        (self.root / "pids.json").write_text(
            json.dumps({**asdict(self), "root": str(self.root), "conf": str(self.conf)})
        )

    def running(self) -> bool:
        return all(process.alive(p) for p in (self.munged, self.slurmctld, self.slurmd))


def load(root: Path) -> Cluster | None:
    """The cluster started under ``root`` earlier, when its daemons still run."""
    try:
        raw = json.loads((root / "pids.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    cluster = Cluster(
        Path(raw["root"]), Path(raw["conf"]), raw["munged"], raw["slurmctld"], raw["slurmd"]
    )
    return cluster if cluster.running() else None


def _munge_key(root: Path) -> Path:
    key = root / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
    return key


def start(
    root: Path, shape: Shape, ctld_port: int, slurmd_port: int, timeout: float = 30.0
) -> Cluster:
    """Write the config, start munged, slurmctld and slurmd, and wait for the node to be idle."""
    if (why := missing()) is not None:
        raise PortalError(why)
    root = root.resolve()
    for sub in ("ctld-state", "slurmd-spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    conf = root / "slurm.conf"
    conf.write_text(config_text(root, shape, ctld_port, slurmd_port))
    sock = root / "munge.sock"
    munged = process.spawn(
        [
            _binary("munged"),
            "--foreground",
            "--force",
            f"--key-file={_munge_key(root)}",
            f"--socket={sock}",
            f"--pid-file={root / 'munged.pid'}",
            f"--log-file={root / 'munged.log'}",
            f"--seed-file={root / 'munge.seed'}",
        ],
        root / "munged.out",
    )
    if not process.wait_until(lambda: sock.exists(), 10):
        process.stop(munged)
        raise PortalError(f"munged did not start: {process.tail(root / 'munged.out')}")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    ctld = process.spawn(
        [_binary("slurmctld"), "-D", "-i", "-f", str(conf)], root / "slurmctld.out", env=env
    )
    slurmd = process.spawn([_binary("slurmd"), "-D", "-f", str(conf)], root / "slurmd.out", env=env)
    cluster = Cluster(root, conf, munged, ctld, slurmd)
    cluster.save()

    def idle() -> bool:
        if not cluster.running():
            return True
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=env, timeout=10
        )
        return out.returncode == 0 and out.stdout.strip().startswith("idle")

    if not process.wait_until(idle, timeout, interval=0.2) or not cluster.running():
        why = process.tail(root / "slurmctld.log") or process.tail(root / "slurmctld.out")
        stop(cluster)
        raise PortalError(f"the local Slurm did not become ready within {timeout:.0f} s: {why}")
    return cluster


def free_port() -> int:
    """A TCP port nobody listens on now (for slurmctld and slurmd)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(cluster: Cluster) -> bool:
    """Cancel every job, then stop slurmd, slurmctld and munged by PID; True when all are gone."""
    if cluster.running():
        subprocess.run(
            ["scancel", "--full", f"--user={os.getuid()}"],
            env=cluster.env,
            capture_output=True,
            timeout=20,
            check=False,
        )
    ok = True
    for pid in (cluster.slurmd, cluster.slurmctld, cluster.munged):
        ok = process.stop(pid, timeout=10) and ok
    return ok
