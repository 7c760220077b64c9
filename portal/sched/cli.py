"""``portal sched``: batch scheduling on Slurm (config, check, status, queue, decisions, enqueue,
drain, the scheduler loop, and a local Slurm for tests and the demo)."""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import asdict

import click

from portal import settings
from portal.auth import audit
from portal.auth.cli_access import current
from portal.auth.roles import requires
from portal.errors import PortalError
from portal.events import bus as events
from portal.sched import capacity, localslurm
from portal.sched import work as queue
from portal.sched.options import local_root, options, slurm_conf
from portal.sched.slurm import Slurm
from portal.timeparse import stamp


def _slurm() -> Slurm:
    cfg = settings.get()
    return Slurm(locate=lambda: slurm_conf(cfg))


def _audit(action: str, target: str, **params: object) -> None:
    cfg = settings.get()
    audit.record(cfg.database_url, current(), audit.Entry(action, target, params=dict(params)))


@click.group()
def sched() -> None:
    """Backlog-driven batch scheduling on Slurm; real-time work keeps its share."""


@sched.command("config")
@click.option("--nodes", default="", help="Slurm node list of the partitions [this host].")
@click.option(
    "--realtime-cpus",
    type=int,
    default=None,
    help="CPUs per node held for real-time work [declared real-time cores].",
)
@click.option("--cpus", type=int, default=None, help="CPUs per node [PORTAL_SCHED_LOCAL_CPUS].")
def config_cmd(nodes: str, realtime_cpus: int | None, cpus: int | None) -> None:
    """Print the slurm.conf fragment: a real-time partition and a requeued batch partition."""
    cfg = settings.get()
    opts = options(cfg)
    if realtime_cpus is None:
        realtime_cpus = max(1, math.ceil(capacity.declared(cfg).cores))
    shape = localslurm.Shape(cpus or opts.local_cpus, opts.local_memory_mb, realtime_cpus)
    shape.check()
    click.echo(localslurm.site_fragment(shape, nodes), nl=False)


@sched.command("check")
def check_cmd() -> None:
    """Do declared real-time needs fit in what Slurm holds for real-time work? (exit 1 if not)"""
    cfg = settings.get()
    opts = options(cfg)
    result = capacity.check(cfg, _slurm(), opts.realtime_partition, opts.partition)
    for line in result.lines:
        click.echo(line)
    if not result.ok:
        raise SystemExit(1)


@requires("operator")
@sched.command("declare")
@click.argument("host")
@click.argument("component")
@click.option(
    "--cores", type=click.FloatRange(0, 100000), required=True, help="Cores the component needs."
)
@click.option(
    "--memory-mb",
    type=click.IntRange(0, 10**8),
    default=0,
    show_default=True,
    help="Memory the component needs.",
)
def declare_cmd(host: str, component: str, cores: float, memory_mb: int) -> None:
    """Declare what inventory component COMPONENT on HOST needs (labels cores, memory_mb)."""
    from portal.inventory import registry

    cfg = settings.get()
    found = [c for c in registry.list_components(cfg, host) if c.name == component]
    if not found:
        raise PortalError(
            f"component {component!r} on host {host!r} is not in the inventory "
            "(add it with: portal hosts add-component)"
        )
    comp = found[0]
    labels = {**comp.labels, "cores": f"{cores:g}", "memory_mb": str(memory_mb)}
    registry.add_component(
        cfg, host, component, comp.kind, comp.process_match, comp.metrics_port, labels=labels
    )
    _audit(
        "sched.declare", f"{host}/{component}", before=comp.labels, cores=cores, memory_mb=memory_mb
    )
    click.echo(f"{comp.kind} component {host}/{component} needs {cores:g} cores, {memory_mb} MB")


@sched.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(as_json: bool) -> None:
    """Slurm's nodes, the real-time and batch shares, the queue and the backlog forecast."""
    from portal.sched import metrics

    cfg = settings.get()
    opts = options(cfg)
    slurm = _slurm()
    nodes = slurm.nodes()
    jobs = slurm.jobs()
    share = capacity.share(slurm, nodes, jobs, opts.partition)
    counts = queue.counts(cfg)
    fc = metrics.forecast(cfg)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "nodes": [asdict(n) for n in nodes],
                    "share": {k: v for k, v in asdict(share).items() if k != "nodes"},
                    "queue": [{"kind": k, "state": s, "items": n} for (k, s), n in counts.items()],
                    "forecast": asdict(fc),
                },
                indent=1,
            )
        )
        return
    click.echo(f"slurm: {slurm.ping()}")
    for node in nodes:
        why = f" ({node.reason})" if node.reason else ""
        click.echo(
            f"node {node.name}: {node.state}{why}, {node.alloc_cpus}/{node.cpus} CPUs allocated"
        )
    click.echo(
        f"real-time share: {share.realtime_cpus} CPUs; batch: {share.batch_used_cpus} of "
        f"{share.batch_cpus} CPUs used, {share.free_batch_cpus} free"
    )
    totals: dict[str, int] = {}
    for (_, state), n in counts.items():
        totals[state] = totals.get(state, 0) + n
    click.echo("work: " + (", ".join(f"{s} {n}" for s, n in sorted(totals.items())) or "none"))
    click.echo(f"forecast: {fc.line()}")


@sched.command("queue")
@click.option("--state", "states", multiple=True, help="Only these states; repeatable.")
@click.option("--limit", type=click.IntRange(1, 100000), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def queue_cmd(states: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Work items: kind, key, state, attempts, Slurm job and its pending reason."""
    from portal.sched.tables import STATES

    bad = [s for s in states if s not in STATES]
    if bad:
        raise PortalError(f"state {bad[0]!r} is not one of {', '.join(STATES)}")
    found = queue.items(settings.get(), states or ("queued", "submitted", "running"), limit)
    if as_json:
        click.echo(json.dumps([asdict(i) for i in found], default=str, indent=1))
        return
    click.echo(f"{'ID':>6} {'KIND':20} {'KEY':14} {'STATE':10} {'TRY':>3} {'JOB':>7} REASON")
    for i in found:
        why = i.slurm_reason or i.last_error or ""
        click.echo(
            f"{i.id:>6} {i.kind:20} {i.key:14} {i.state:10} {i.attempts:>3} "
            f"{i.job_id or '':>7} {why}"
        )


@sched.command("decisions")
@click.option("--limit", type=click.IntRange(1, 10000), default=30, show_default=True)
def decisions_cmd(limit: int) -> None:
    """The scheduler's last decisions, newest first, with their reasons."""
    for d in queue.recent_decisions(settings.get(), limit):
        job = f" job {d.job_id}" if d.job_id else ""
        click.echo(f"{stamp(d.time)} {d.decision:13}{job} {d.reason}")


@sched.command("kinds")
def kinds_cmd() -> None:
    """Registered work kinds: priority, resources, limits."""
    for k in queue.kinds(settings.get()).values():
        click.echo(
            f"{k.name:20} priority {k.priority:>3}  {k.cores} CPU {k.memory_mb} MB  "
            f"pending<={k.max_pending_minutes:g}m running<={k.max_running_minutes:g}m  "
            f"{k.help}"
        )


@requires("operator")
@sched.command("enqueue")
@click.argument("kind")
@click.argument("keys", nargs=-1, required=True)
@click.option(
    "--priority", type=int, default=0, show_default=True, help="Added to the kind's priority."
)
def enqueue_cmd(kind: str, keys: tuple[str, ...], priority: int) -> None:
    """Queue work of KIND for each KEY (a key already queued or done is left alone)."""
    cfg = settings.get()
    added = queue.enqueue(cfg, kind, list(keys), priority)
    _audit("sched.enqueue", kind, keys=list(keys)[:50], count=len(keys), added=added)
    events.publish(
        cfg.database_url, "sched.enqueued", {"kind": kind, "added": added}, source="sched"
    )
    click.echo(f"{added} of {len(keys)} {kind} item(s) queued")


@requires("operator")
@sched.command("cancel")
@click.argument("item_id", type=int)
def cancel_cmd(item_id: int) -> None:
    """Cancel work item ITEM_ID (and its Slurm job, if it has one)."""
    cfg = settings.get()
    item = queue.cancel(cfg, item_id)
    if item.job_id:
        _slurm().cancel(item.job_id)
    _audit("sched.cancel", str(item_id), kind=item.kind, key=item.key, job_id=item.job_id)
    events.publish(cfg.database_url, "sched.cancelled", {"work_id": item_id}, source="sched")
    click.echo(f"work item {item_id} cancelled")


@requires("operator")
@sched.command("drain")
@click.argument("node")
@click.option("--reason", required=True, help="Why (Slurm shows it with the node).")
def drain_cmd(node: str, reason: str) -> None:
    """Drain Slurm node NODE: running jobs finish, no new job starts there."""
    cfg = settings.get()
    _slurm().drain(node, reason)
    _audit("sched.drain", node, reason=reason)
    events.publish(
        cfg.database_url, "sched.node_drained", {"node": node, "reason": reason}, source="sched"
    )
    click.echo(f"node {node} draining: {reason}")


@requires("operator")
@sched.command("resume")
@click.argument("node")
def resume_cmd(node: str) -> None:
    """Return drained Slurm node NODE to service."""
    cfg = settings.get()
    _slurm().resume(node)
    _audit("sched.resume", node)
    events.publish(cfg.database_url, "sched.node_resumed", {"node": node}, source="sched")
    click.echo(f"node {node} resumed")


def _until_signal() -> list[bool]:
    stopped = [False]

    def handler(*_: object) -> None:
        stopped[0] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stopped


@requires("operator")
@sched.command("run")
def run_cmd() -> None:
    """The scheduler loop (the `sched` component of `portal run`); stops on SIGTERM."""
    from portal.sched import metrics, scheduler

    cfg = settings.get()
    stopped = _until_signal()

    failed = [""]

    def publish(step: scheduler.Step) -> None:
        try:
            metrics.push(cfg, step)
            failed[0] = ""
        except OSError as exc:
            if str(exc) != failed[0]:  # once per new failure, not once per poll
                click.echo(f"warning: metrics not pushed to {cfg.pushgateway_url}: {exc}", err=True)
            failed[0] = str(exc)

    opts = options(cfg)
    if opts.actuator == "portal.sched.actuator:slurm" and localslurm.missing() is not None:
        click.echo(f"scheduler idle: {localslurm.missing()}; work stays queued")
        while not stopped[0]:
            time.sleep(0.5)
        return
    click.echo(f"scheduler: actuator {opts.actuator}, partition {opts.partition}")
    from portal.sched.actuator import load

    scheduler.run(cfg, load(cfg), lambda: stopped[0], publish)


@sched.group("slurm")
def slurm_group() -> None:
    """A local single-node Slurm (munged, slurmctld, slurmd) for tests and the demo."""


@requires("admin")
@slurm_group.command("run")
@click.option(
    "--realtime-cpus",
    type=int,
    default=None,
    help="CPUs held for real-time work [declared real-time cores, at least 1].",
)
def slurm_run(realtime_cpus: int | None) -> None:
    """Start the local Slurm under the data dir, keep it until SIGTERM, then stop it."""
    from portal.stack.process import alive

    cfg = settings.get()
    if (why := localslurm.missing()) is not None:
        click.echo(f"no local Slurm: {why}; the Scheduling page shows the queue only")
        stopped = _until_signal()
        while not stopped[0]:
            time.sleep(0.5)
        return
    realtime = realtime_cpus
    if realtime is None:
        realtime = max(1, math.ceil(capacity.declared(cfg).cores))
    opts = options(cfg)
    shape = localslurm.Shape(opts.local_cpus, opts.local_memory_mb, min(realtime, opts.local_cpus))
    root = local_root(cfg)
    old = localslurm.load(root)
    if old is not None:
        raise PortalError(f"a local Slurm already runs from {root} (slurmctld PID {old.slurmctld})")
    cluster = localslurm.start(root, shape, localslurm.free_port(), localslurm.free_port())
    click.echo(
        f"local Slurm up: SLURM_CONF={cluster.conf} ({shape.cpus} CPUs, "
        f"{shape.realtime_cpus} held for real-time work)"
    )
    stopped = _until_signal()
    try:
        while not stopped[0] and alive(cluster.slurmctld):
            time.sleep(0.5)
    finally:
        localslurm.stop(cluster)
        (root / "pids.json").unlink(missing_ok=True)


@requires("operator")
@sched.command("demo-backlog")
@click.option(
    "--every",
    type=click.FloatRange(0.1, 3600),
    default=20.0,
    show_default=True,
    help="Seconds between two observing days' worth of work.",
)
@click.option(
    "--initial-days",
    type=click.IntRange(0, 3650),
    default=60,
    show_default=True,
    help="Days of backlog queued at start (the stacks not built yet).",
)
def demo_backlog(every: float, initial_days: int) -> None:
    """Demo only: queue Hhat work as the simulated telescope observes (one day per tick)."""
    import datetime as dt

    cfg = settings.get()
    stopped = _until_signal()
    day = dt.date.today() - dt.timedelta(days=initial_days)

    def observe(day: dt.date) -> None:
        queue.enqueue(cfg, "hhat-daily", [day.isoformat()])
        queue.enqueue(cfg, "hhat-check", [day.isoformat()])
        if day.day == 1:
            queue.enqueue(cfg, "hhat-monthly", [day.strftime("%Y-%m")])

    while day < dt.date.today() and not stopped[0]:
        observe(day)
        day += dt.timedelta(days=1)
    click.echo(f"demo backlog: {initial_days} days queued; one more every {every:g} s")
    while not stopped[0]:
        observe(day)
        day += dt.timedelta(days=1)
        deadline = time.monotonic() + every
        while time.monotonic() < deadline and not stopped[0]:
            time.sleep(0.2)
