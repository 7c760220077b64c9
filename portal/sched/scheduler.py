"""The backlog-driven scheduler: each poll it reconciles the work queue with Slurm, then keeps as
many batch jobs submitted as the free batch capacity takes (KEDA-like: min/max, a pending
allowance, scale-in only of pending jobs after a stabilization window and a cooldown).

Idempotent across ``kill -9``: a submission is first written (state ``submitted``, attempt N,
no job id), then sent as job ``obs-work-<id>-<N>``; a later poll adopts a job of that name or,
when Slurm has none, queues the item again. One scheduler per database (an advisory lock).
"""

from __future__ import annotations

import logging
import shlex
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from portal.db.engine import get_engine
from portal.events import bus as events
from portal.hookspecs import WorkKind
from portal.sched import capacity
from portal.sched import work as queue
from portal.sched.actuator import Actuator
from portal.sched.options import Options, options
from portal.sched.slurm import FAILED, Job, Node, SlurmError
from portal.sched.tables import work
from portal.settings import Settings

log = logging.getLogger(__name__)
LOCK_KEY = 0x5C4ED  # pg advisory lock: one scheduler per database
DRAIN_TAG = "obsportal ops drain:"  # reason prefix of Slurm drains that mirror operations


@dataclass(frozen=True)
class Stuck:
    """A job past its kind's pending or running limit, with Slurm's reason."""

    work_id: int
    kind: str
    job_id: int
    state: str  # pending | running
    reason: str
    seconds: float
    limit_seconds: float


@dataclass
class Step:
    """What one poll saw and did (the CLI, the page and the metrics show it)."""

    time: datetime
    free_cpus: int = 0
    batch_cpus: int = 0
    realtime_cpus: int = 0
    queued: int = 0
    pending: int = 0
    running: int = 0
    desired: int = 0
    submitted: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    share: capacity.Share | None = None
    reason: str = ""


class Scheduler:
    """One scheduler over one orchestrator (an ``Actuator``: Slurm) and one database."""

    def __init__(
        self,
        cfg: Settings,
        slurm: Actuator,
        opts: Options | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.slurm = slurm
        self.opts = opts or options(cfg)
        self.clock = clock
        self._desired: deque[tuple[float, int]] = deque()
        self._last_scale_in = -1e18
        self._holding = False
        self._stuck_seen: set[tuple[int, int, str]] = set()
        self._lock_conn: sa.Connection | None = None
        self._kinds: dict[str, WorkKind] = {}

    # -- one scheduler per database -------------------------------------------------------------
    def lock(self) -> bool:
        """Take the advisory lock (held while this object lives); False when another holds it."""
        conn = get_engine(self.cfg.database_url).connect()
        got = bool(
            conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
        )
        conn.commit()
        if not got:
            conn.close()
            return False
        self._lock_conn = conn
        return True

    def unlock(self) -> None:
        if self._lock_conn is not None:
            self._lock_conn.close()
            self._lock_conn = None

    # -- helpers ----------------------------------------------------------------------------------
    def _record(
        self,
        decision: str,
        reason: str,
        work_id: int | None = None,
        job_id: int | None = None,
        **details: Any,
    ) -> None:
        with get_engine(self.cfg.database_url).begin() as conn:
            queue.decide(conn, decision, reason, work_id, job_id, **details)
        payload = {"decision": decision, "reason": reason, "work_id": work_id, "job_id": job_id}
        events.publish(self.cfg.database_url, f"sched.{decision}", payload, source="sched")

    def _update(self, item_id: int, **values: Any) -> None:
        with get_engine(self.cfg.database_url).begin() as conn:
            conn.execute(
                work.update().where(work.c.id == item_id).values(updated_at=sa.func.now(), **values)
            )

    def _kind(self, name: str) -> WorkKind:
        return self._kinds.get(name) or WorkKind(name, "unregistered kind")

    def command(self, item: queue.Item) -> str:
        """The job's shell command: the kind's, with ``{key}`` quoted, or the stand-in."""
        kind = self._kind(item.kind)
        if kind.command:
            return kind.command.replace("{key}", shlex.quote(item.key))
        return f"sleep {self.opts.standin_seconds:g}"

    # -- reconcile the queue with what Slurm knows -----------------------------------------------
    def _fail(self, item: queue.Item, why: str) -> None:
        kind = self._kind(item.kind)
        if item.attempts < kind.max_attempts:
            self._update(item.id, state="queued", job_id=None, last_error=why, slurm_reason=None)
            self._record(
                "retry",
                f"{why}; attempt {item.attempts} of {kind.max_attempts}, queued again",
                item.id,
                item.job_id,
                kind=item.kind,
                key=item.key,
            )
        else:
            self._update(item.id, state="failed", last_error=why, finished_at=datetime.now(UTC))
            self._record(
                "give-up",
                f"{why}; {item.attempts} attempts used",
                item.id,
                item.job_id,
                kind=item.kind,
                key=item.key,
            )

    def _follow(self, item: queue.Item, job: Job) -> None:
        """Carry a job's state into its work item."""
        if job.state == "PENDING":
            if item.state != "submitted" or item.slurm_reason != job.reason:
                self._update(item.id, state="submitted", slurm_reason=job.reason)
            if job.reason == "BeginTime" and job.requeued > 0:
                self.slurm.release_begin_time(job.id)  # preempted: eligible again at once
        elif job.state in ("RUNNING", "COMPLETING", "CONFIGURING"):
            if item.state != "running":
                self._update(
                    item.id,
                    state="running",
                    slurm_reason=None,
                    started_at=job.started or datetime.now(UTC),
                )
        elif job.state == "COMPLETED":
            self._update(
                item.id,
                state="done",
                slurm_reason=None,
                last_error=None,
                finished_at=job.ended or datetime.now(UTC),
            )
        elif job.state in FAILED:
            self._fail(item, f"job {job.id} ended {job.state} (exit {job.exit_code >> 8})")

    def reconcile(self, jobs: list[Job]) -> None:
        """Adopt, follow or repair every in-flight item; cancel jobs no item should have."""
        by_id = {j.id: j for j in jobs}
        by_name: dict[str, list[Job]] = {}
        for j in jobs:
            if j.work_id is not None:
                by_name.setdefault(j.name, []).append(j)
        inflight = queue.items(self.cfg, ("submitted", "running"), limit=100000)
        wanted: set[int] = set()
        for item in inflight:
            job: Job | None = by_id.get(item.job_id) if item.job_id else None
            if item.job_id is None:
                named = sorted(by_name.get(item.job_name, []), key=lambda j: j.id)
                if named:
                    job = named[0]
                    self._update(item.id, job_id=job.id)
                    self._record(
                        "adopt",
                        f"job {job.id} {item.job_name} found in Slurm after a "
                        "restart: adopted, not submitted again",
                        item.id,
                        job.id,
                    )
                    item = queue.Item(**{**item.__dict__, "job_id": job.id})
                else:
                    self._update(item.id, state="queued", attempts=max(item.attempts - 1, 0))
                    self._record(
                        "requeue",
                        f"attempt {item.attempts} never reached Slurm "
                        "(scheduler stopped mid-submission): queued again",
                        item.id,
                    )
                    continue
            if job is None:
                self._fail(item, f"job {item.job_id} vanished from Slurm")
                continue
            wanted.add(job.id)
            self._follow(item, job)
        # active jobs of ours that no in-flight item owns: doubles, or cancelled work
        for job in jobs:
            if job.work_id is not None and job.active and job.id not in wanted:
                self.slurm.cancel(job.id)
                self._record(
                    "cancel-orphan",
                    f"job {job.id} ({job.name}) belongs to no "
                    "in-flight work item: cancelled so work runs once",
                    job.work_id,
                    job.id,
                )

    # -- stuck work -----------------------------------------------------------------------------
    def stuck(self, jobs: list[Job], now: datetime) -> list[Stuck]:
        by_id = {j.id: j for j in jobs}
        found = []
        for item in queue.items(self.cfg, ("submitted", "running"), limit=100000):
            job = by_id.get(item.job_id or -1)
            if job is None:
                continue
            kind = self._kind(item.kind)
            if job.state == "PENDING":
                since = item.submitted_at or job.submitted or now
                limit, state, reason = kind.max_pending_minutes * 60, "pending", job.reason
            else:
                since = item.started_at or job.started or now
                limit, state, reason = kind.max_running_minutes * 60, "running", f"on {job.nodes}"
            age = (now - since).total_seconds()
            if age <= limit:
                continue
            found.append(Stuck(item.id, item.kind, job.id, state, reason, age, limit))
            key = (item.id, job.id, state)
            if key not in self._stuck_seen:
                self._stuck_seen.add(key)
                self._record(
                    "stuck",
                    f"job {job.id} ({item.kind} {item.key}) {state} for "
                    f"{age:.0f} s, limit {limit:.0f} s; Slurm: {reason}",
                    item.id,
                    job.id,
                    state=state,
                    slurm_reason=reason,
                )
        return found

    # -- drained hosts (operations) -> drained Slurm nodes ----------------------------------
    def _ops_drains(self) -> dict[str, str] | None:
        """Hosts the operations capability drained, with the reason (None: no such capability)."""
        try:
            from portal.ops import drain
        except ImportError:
            return None
        try:
            return {h: str(d["reason"]) for h, d in drain.drains(self.cfg).items()}
        except sa.exc.ProgrammingError:  # database older than the operations tables
            return None

    def sync_drains(self, nodes: list[Node]) -> bool:
        """``scontrol update nodename=N state=drain reason=...`` for each host operations drained;
        resume the nodes this did once operations undrains them (never an operator's own drain).
        True when a node changed."""
        wanted = self._ops_drains()
        if wanted is None:
            return False
        changed = False
        for node in nodes:
            ours = node.reason.startswith(DRAIN_TAG)
            if node.name in wanted and not node.drained:
                reason = f"{DRAIN_TAG} {wanted[node.name]}"
                self.slurm.drain(node.name, reason)
                self._record(
                    "drain", f"node {node.name} drained in Slurm: {reason}", node=node.name
                )
                changed = True
            elif node.name not in wanted and node.drained and ours:
                self.slurm.resume(node.name)
                self._record(
                    "resume",
                    f"node {node.name} resumed in Slurm: operations undrained the host",
                    node=node.name,
                )
                changed = True
        return changed

    # -- the decision -----------------------------------------------------------------------------
    def _fits(self, items: list[queue.Item], share: capacity.Share) -> int:
        cpus, mem, n = share.free_batch_cpus, share.free_memory_mb, 0
        for item in items:
            kind = self._kind(item.kind)
            if kind.cores > cpus or kind.memory_mb > mem:
                break
            cpus -= kind.cores
            mem -= kind.memory_mb
            n += 1
        return n

    def step(self) -> Step:
        """One poll: reconcile, detect stuck jobs, then scale out or in."""
        now = datetime.now(UTC)
        self._kinds = queue.kinds(self.cfg)
        jobs = self.slurm.jobs()
        self.reconcile(jobs)  # its cancels only touch pending jobs, which hold no CPUs
        nodes = self.slurm.nodes()
        if self.sync_drains(nodes):
            nodes = self.slurm.nodes()
        share = capacity.share(self.slurm, nodes, jobs, self.opts.partition)
        report = Step(
            now,
            share.free_batch_cpus,
            share.batch_cpus,
            share.realtime_cpus,
            jobs=jobs,
            share=share,
        )
        report.stuck = self.stuck(jobs, now)
        open_items = queue.items(self.cfg, ("queued", "submitted", "running"), limit=100000)
        running = [i for i in open_items if i.state == "running"]
        pending = [i for i in open_items if i.state == "submitted"]
        queued = queue.ordered(
            self.cfg, [i for i in open_items if i.state == "queued"], now, self.opts.age_weight
        )
        report.queued, report.pending, report.running = len(queued), len(pending), len(running)
        backlog = len(open_items)
        fits = self._fits(pending + queued, share)
        allowance = self.opts.max_pending if share.batch_cpus > 0 else 0  # none: all drained
        desired = len(running) + fits + allowance
        desired = max(min(desired, self.opts.max_jobs), self.opts.min_jobs)
        desired = min(desired, backlog)
        report.desired = desired
        clock = self.clock()
        self._desired.append((clock, desired))
        while self._desired and self._desired[0][0] < clock - self.opts.stabilization_seconds:
            self._desired.popleft()
        inflight = len(running) + len(pending)
        why = (
            f"backlog {backlog} ({len(queued)} queued), {share.free_batch_cpus} of "
            f"{share.batch_cpus} batch CPUs free, {len(running)} running, {len(pending)} "
            f"pending; want {desired} in flight"
        )
        if share.drained:
            why += f"; drained: {', '.join(share.drained)}"
        report.reason = why
        if desired > inflight and queued:
            report.submitted = self._submit(queued[: desired - inflight], why)
        else:
            self._scale_in(pending, inflight, clock, why, report)
            if queued and not report.cancelled and not self._holding:
                self._holding = True  # recorded once per spell of waiting, not every poll
                self._record("hold", why + ": nothing submitted")
        return report

    def _submit(self, items: list[queue.Item], why: str) -> list[int]:
        done: list[int] = []
        for item in items:
            kind = self._kind(item.kind)
            with get_engine(self.cfg.database_url).begin() as conn:
                attempt = conn.execute(
                    work.update()
                    .where(work.c.id == item.id, work.c.state == "queued")
                    .values(
                        state="submitted",
                        attempts=work.c.attempts + 1,
                        job_id=None,
                        submitted_at=sa.func.now(),
                        started_at=None,
                        slurm_reason=None,
                        updated_at=sa.func.now(),
                    )
                    .returning(work.c.attempts)
                ).scalar()
            if attempt is None:
                continue  # taken or cancelled meanwhile
            name = queue.Item(**{**item.__dict__, "attempts": attempt}).job_name
            try:
                job_id = self.slurm.submit(
                    name,
                    self.command(item),
                    self.opts.partition,
                    kind.cores,
                    kind.memory_mb,
                    comment=f"obsportal {item.kind} {item.key}",
                )
            except SlurmError as exc:
                self._update(item.id, state="queued", attempts=attempt - 1, last_error=str(exc))
                self._record("submit-failed", str(exc), item.id)
                break
            self._update(item.id, job_id=job_id)
            done.append(item.id)
        if done:
            self._holding = False
            self._record("scale-out", f"{why}: submitted {len(done)}", work_ids=done)
        return done

    def _scale_in(
        self, pending: list[queue.Item], inflight: int, clock: float, why: str, report: Step
    ) -> None:
        """Cancel surplus pending jobs only: never a running one."""
        keep = max((d for _, d in self._desired), default=0)
        surplus = min(inflight - keep, len(pending))
        if surplus <= 0 or clock - self._last_scale_in < self.opts.cooldown_seconds:
            return
        self._last_scale_in = clock
        victims = sorted(pending, key=lambda i: i.id, reverse=True)[:surplus]
        for item in victims:
            if item.job_id is not None:
                try:
                    self.slurm.cancel(item.job_id)
                except SlurmError as exc:
                    log.warning("scale-in: %s", exc)
                    continue
            self._update(
                item.id,
                state="queued",
                job_id=None,
                slurm_reason=None,
                attempts=max(item.attempts - 1, 0),
            )
            report.cancelled.append(item.id)
        self._record(
            "scale-in",
            f"{why}; highest want over the stabilization window {keep}: "
            f"cancelled {len(report.cancelled)} pending job(s), running jobs untouched",
            work_ids=report.cancelled,
        )


def run(
    cfg: Settings,
    slurm: Actuator,
    stop: Callable[[], bool],
    on_step: Callable[[Step], None] | None = None,
) -> None:
    """Poll until ``stop()``; a Slurm or database outage is logged and retried next poll."""
    sched = Scheduler(cfg, slurm)
    while not sched.lock():
        log.warning("another scheduler holds the lock; waiting")
        if stop():
            return
        time.sleep(sched.opts.poll_seconds)
    last_error = ""
    try:
        while not stop():
            started = time.monotonic()
            try:
                step = sched.step()
                if on_step is not None:
                    on_step(step)
            except (SlurmError, sa.exc.OperationalError) as exc:
                if str(exc) != last_error:  # one line per new failure, not one per poll
                    log.warning("scheduler poll failed: %s", exc)
                last_error = str(exc)
            else:
                last_error = ""
            rest = sched.opts.poll_seconds - (time.monotonic() - started)
            deadline = time.monotonic() + max(rest, 0)
            while time.monotonic() < deadline and not stop():
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
    finally:
        sched.unlock()
