"""Action runs: request one, claim the next, record its steps, finish it; and read them back.

A run is requested (validated, audited, queued) by the CLI or the web; the ops worker claims it
(``FOR UPDATE SKIP LOCKED``) only when it can take every one of its hosts' locks
(``ops_host_locks``, one row per host: one action at a time per host). A process that executes
runs holds a PostgreSQL advisory lock named by its key (``owner_key``); a run whose owner's lock
is free again belongs to a process that is gone (killed with -9, crashed): ``recover_orphans``
fails it and frees its hosts, or queues it again when its action is resumable.
"""

from __future__ import annotations

import importlib
import logging
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from portal.auth import audit
from portal.auth.identity import Identity
from portal.auth.roles import at_least
from portal.db.engine import connect_raw, get_engine
from portal.errors import PortalError
from portal.events import bus
from portal.hookspecs import OpsAction
from portal.ops.executor import targets
from portal.ops.tables import ops_host_locks, ops_runs, ops_steps
from portal.settings import Settings

log = logging.getLogger(__name__)
#: Advisory-lock namespaces: run owners (one key per process) and running ops workers.
OWNER_NS = 0x6F7073  # "ops"
WORKER_NS = 0x6F7077  # "opw"
FINISHED = ("succeeded", "failed", "cancelled")
REASON_MAX = 500


class Forbidden(PortalError):
    """The actor's role is below what the action needs (HTTP 403)."""


class ActionFailed(PortalError):
    """An action stops here: the run fails with this one line."""


@dataclass(frozen=True)
class Request:
    """A validated request, as an action's ``check`` function sees it."""

    cfg: Settings
    who: Identity
    action: OpsAction
    hosts: tuple[str, ...]
    params: dict[str, str]
    reason: str
    dry_run: bool


@dataclass(frozen=True)
class Step:
    seq: int
    host: str
    name: str
    state: str
    detail: str
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Run:
    """A stored run (``steps`` filled by ``get``)."""

    id: int
    action: str
    params: dict[str, Any]
    hosts: tuple[str, ...]
    reason: str
    actor: str
    role: str
    source: str
    request_id: str
    dry_run: bool
    state: str
    worker: int | None
    attempts: int
    cancel_requested: bool
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    steps: tuple[Step, ...] = field(default=())

    @property
    def identity(self) -> Identity:
        """The requester, as the audit log names them (the worker acts on their behalf)."""
        kind, _, name = self.actor.partition(":")
        return Identity(
            name or kind, kind if name else "user", self.role, self.source, self.request_id
        )

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "steps"}
        out["hosts"] = list(self.hosts)
        out["steps"] = [s.__dict__ for s in self.steps]
        return out


_RUN_COLUMNS = [c for c in Run.__dataclass_fields__ if c != "steps"]


def _run(row: Any, steps: Sequence[Step] = ()) -> Run:
    values = {k: row._mapping[k] for k in _RUN_COLUMNS}
    values["hosts"] = tuple(values["hosts"] or ())
    return Run(**values, steps=tuple(steps))


# -- the registry of actions -------------------------------------------------------------------
def actions(cfg: Settings) -> dict[str, OpsAction]:
    """Every plugin's actions (``register_ops_actions``), by name; a name twice is an error."""
    from portal import plugins

    found: dict[str, OpsAction] = {}
    for action in plugins.get(cfg).results("register_ops_actions"):
        if action.name in found:
            raise PortalError(f"two plugins register an ops action named {action.name!r}")
        found[action.name] = action
    return found


def function(spec: str, what: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` names (an action's ``run`` or ``check``)."""
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise PortalError(f"{what} {spec!r} cannot be loaded ({exc})") from None
    if not callable(fn):
        raise PortalError(f"{what} {spec!r} is not a function")
    return fn


# -- requesting ----------------------------------------------------------------------------------
def _check_params(action: OpsAction, params: Mapping[str, Any]) -> dict[str, str]:
    """Values as text, each matching its declared pattern; absent ones must accept ``""``."""
    unknown = sorted(set(params) - set(action.params))
    if unknown:
        raise PortalError(
            f"action {action.name!r} takes no parameter {unknown[0]!r} "
            f"(it takes: {', '.join(action.params) or 'none'})"
        )
    out: dict[str, str] = {}
    for name, pattern in action.params.items():
        raw = params.get(name)
        value = "" if raw is None else str(raw)
        if not re.fullmatch(pattern, value):
            shown = f"{value!r}" if value else "nothing"
            raise PortalError(f"{action.name}: parameter {name} {shown} must match {pattern}")
        if value:
            out[name] = value
    return out


def validate(
    cfg: Settings,
    who: Identity,
    name: str,
    hosts: Sequence[str],
    params: Mapping[str, Any] | None,
    reason: str,
    dry_run: bool = False,
) -> Request:
    """The request, checked (role, reason, hosts, parameters, the action's own check), or one
    clear error; nothing connects anywhere before this passes."""
    known = actions(cfg)
    action = known.get(name)
    if action is None:
        raise PortalError(f"unknown ops action {name!r} (known: {', '.join(sorted(known))})")
    if not at_least(who.role, action.role):
        raise Forbidden(
            f"ops {name} needs role {action.role}; {who.label} has {who.role or 'none'}"
        )
    reason = (reason or "").strip()
    if not reason:
        raise PortalError(f"ops {name} needs a reason (who asked, which ticket, why)")
    if len(reason) > REASON_MAX or not reason.isprintable():
        raise PortalError(f"the reason must be one line of at most {REASON_MAX} characters")
    wanted = tuple(dict.fromkeys(h.strip() for h in hosts if h.strip()))
    if action.hosts == "one" and len(wanted) != 1:
        raise PortalError(f"ops {name} takes exactly one host")
    if action.hosts == "some" and not wanted:
        raise PortalError(f"ops {name} needs at least one host")
    targets(cfg.database_url, wanted)  # names by pattern, then known to the inventory
    request = Request(
        cfg, who, action, wanted, _check_params(action, params or {}), reason, dry_run
    )
    if action.check:
        function(action.check, f"ops action {name} check")(request)
    return request


def request(
    cfg: Settings,
    who: Identity,
    name: str,
    hosts: Sequence[str],
    params: Mapping[str, Any] | None = None,
    reason: str = "",
    dry_run: bool = False,
    say: Callable[[str], None] | None = None,
) -> int:
    """Validate, audit and queue a run; returns its id. A dry run is executed here at once
    (it runs nothing on any host) and is finished when this returns."""
    try:
        req = validate(cfg, who, name, hosts, params, reason, dry_run)
    except Forbidden as exc:
        audit.record(
            cfg.database_url,
            who,
            audit.Entry(
                f"ops.{name}.requested",
                ",".join(hosts) or "-",
                "refused",
                dict(params or {}),
                reason,
                after={"error": str(exc)},
            ),
        )
        raise
    state = "running" if dry_run else "queued"
    with get_engine(cfg.database_url).begin() as conn:
        run_id = int(
            conn.execute(
                sa.insert(ops_runs)
                .values(
                    action=name,
                    params=req.params,
                    hosts=list(req.hosts),
                    reason=req.reason,
                    actor=who.label,
                    role=who.role or "",
                    source=who.address,
                    request_id=who.request_id,
                    dry_run=dry_run,
                    state=state,
                    worker=owner_key(cfg.database_url) if dry_run else None,
                    attempts=1 if dry_run else 0,
                    cancel_requested=False,
                    progress={},
                    created_at=sa.func.now(),
                    started_at=sa.func.now() if dry_run else None,
                )
                .returning(ops_runs.c.id)
            ).scalar_one()
        )
        audit.record(
            cfg.database_url,
            who,
            audit.Entry(
                f"ops.{name}.requested",
                ",".join(req.hosts) or "-",
                params={"run": run_id, "dry_run": dry_run, **req.params},
                reason=req.reason,
            ),
            conn=conn,
        )
    _publish(cfg, "ops.requested", run_id, name, req.hosts, state=state, dry_run=dry_run)
    if dry_run:
        from portal.ops.context import execute
        from portal.ops.executor import DryRunExecutor

        run = get(cfg, run_id)
        execute(cfg, run, DryRunExecutor(say), say=say)
    return run_id


def _publish(
    cfg: Settings, topic: str, run_id: int, action: str, hosts: Sequence[str], **more: Any
) -> None:
    payload = {"run": run_id, "action": action, "hosts": list(hosts), **more}
    bus.publish(cfg.database_url, topic, payload, source="ops")


def cancel(cfg: Settings, who: Identity, run_id: int, reason: str = "") -> str:
    """Cancel a queued run at once; ask a running one to stop at its next step. Returns the
    state it is in now."""
    run = get(cfg, run_id)
    if not at_least(who.role, "operator"):
        raise Forbidden(f"cancelling needs role operator; {who.label} has {who.role or 'none'}")
    if run.finished:
        raise PortalError(f"run {run_id} already {run.state}")
    with get_engine(cfg.database_url).begin() as conn:
        done = conn.execute(
            ops_runs.update()
            .where(ops_runs.c.id == run_id, ops_runs.c.state == "queued")
            .values(state="cancelled", finished_at=sa.func.now(), error="cancelled")
        ).rowcount
        if not done:
            conn.execute(
                ops_runs.update().where(ops_runs.c.id == run_id).values(cancel_requested=True)
            )
        if done:
            conn.execute(ops_host_locks.delete().where(ops_host_locks.c.run_id == run_id))
        audit.record(
            cfg.database_url,
            who,
            audit.Entry(
                f"ops.{run.action}.cancel",
                ",".join(run.hosts) or "-",
                params={"run": run_id},
                reason=reason,
                before={"state": run.state},
                after={"state": "cancelled" if done else "cancel requested"},
            ),
            conn=conn,
        )
    _publish(
        cfg, "ops.cancelled" if done else "ops.cancel_requested", run_id, run.action, run.hosts
    )
    return "cancelled" if done else run.state


# -- owning and claiming -----------------------------------------------------------------------
_owner: dict[str, tuple[int, psycopg.Connection]] = {}
_owner_lock = threading.Lock()


def owner_key(database_url: str) -> int:
    """This process's owner key: the advisory lock it holds on its own connection while alive.

    The lock vanishes with the process (even after kill -9, when PostgreSQL sees the connection
    close), which is how ``recover_orphans`` knows a run's owner is gone. When the connection
    itself was lost (a database restart), the same key is taken again if it is still free.
    """
    with _owner_lock:
        held = _owner.get(database_url)
        if held is not None:
            try:
                held[1].execute("SELECT 1")
                return held[0]
            except psycopg.Error:
                held[1].close()
        conn = connect_raw(database_url, autocommit=True)
        key = held[0] if held is not None else secrets.randbelow(2**31 - 2) + 1
        while True:
            got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (OWNER_NS, key)).fetchone()
            if got and got[0]:
                break
            key = secrets.randbelow(2**31 - 2) + 1
        _owner[database_url] = (key, conn)
        return key


def recover_orphans(cfg: Settings, resumable: Callable[[str], bool] | None = None) -> list[int]:
    """Runs whose owning process is gone: failed (hosts unlocked), or queued again when their
    action is resumable (hosts stay locked for them). Returns their ids."""
    if resumable is None:
        known = actions(cfg)
        resumable = lambda name: bool(known.get(name) and known[name].resumable)  # noqa: E731
    recovered: list[Run] = []
    requeued: set[int] = set()
    with get_engine(cfg.database_url).begin() as conn:
        rows = conn.execute(
            sa.select(ops_runs)
            .where(ops_runs.c.state == "running")
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            # free only when no live session holds it; released again at commit
            gone = conn.execute(
                sa.select(sa.func.pg_try_advisory_xact_lock(OWNER_NS, row.worker or 0))
            ).scalar_one()
            if not gone:
                continue
            run = _run(row)
            recovered.append(run)
            if resumable(run.action) and not run.dry_run and not run.cancel_requested:
                requeued.add(run.id)
                conn.execute(
                    ops_runs.update()
                    .where(ops_runs.c.id == run.id)
                    .values(state="queued", worker=None)
                )
            else:
                conn.execute(
                    ops_runs.update()
                    .where(ops_runs.c.id == run.id)
                    .values(
                        state="failed",
                        finished_at=sa.func.now(),
                        error="the process running it ended mid-run (worker killed?)",
                    )
                )
                conn.execute(ops_host_locks.delete().where(ops_host_locks.c.run_id == run.id))
            conn.execute(
                ops_steps.update()
                .where(ops_steps.c.run_id == run.id, ops_steps.c.state == "running")
                .values(
                    state="failed",
                    finished_at=sa.func.now(),
                    detail=ops_steps.c.detail + " (interrupted: the worker ended)",
                )
            )
    for run in recovered:
        again = run.id in requeued
        audit.record(
            cfg.database_url,
            run.identity,
            audit.Entry(
                f"ops.{run.action}" + (".resume" if again else ""),
                ",".join(run.hosts) or "-",
                "ok" if again else "failed",
                {"run": run.id, "dry_run": run.dry_run},
                run.reason,
                before={"state": "running", "worker": run.worker},
                after={
                    "state": "queued" if again else "failed",
                    "why": "the process running it ended",
                },
            ),
        )
        _publish(
            cfg,
            "ops.resumed" if again else "ops.finished",
            run.id,
            run.action,
            run.hosts,
            state="queued" if again else "failed",
            error="worker ended",
        )
    return [r.id for r in recovered]


def claim(cfg: Settings, worker: int, only: Sequence[int] = ()) -> Run | None:
    """The oldest queued run whose hosts are all free (their locks are taken for it), marked
    running for ``worker``; None when none can start now."""
    with get_engine(cfg.database_url).begin() as conn:
        query = (
            sa.select(ops_runs)
            .where(ops_runs.c.state == "queued")
            .order_by(ops_runs.c.id)
            .limit(50)
            .with_for_update(skip_locked=True)
        )
        if only:
            query = query.where(ops_runs.c.id.in_(list(only)))
        for row in conn.execute(query).all():
            hosts = list(row.hosts or ())
            taken = conn.execute(
                sa.select(ops_host_locks.c.host).where(
                    ops_host_locks.c.host.in_(hosts), ops_host_locks.c.run_id != row.id
                )
            ).first()
            if taken is not None:
                continue
            if hosts:
                stmt = insert(ops_host_locks).values(
                    [{"host": h, "run_id": row.id, "locked_at": sa.func.now()} for h in hosts]
                )
                # a lock another worker is taking right now makes this wait, then do nothing
                stmt = stmt.on_conflict_do_nothing(index_elements=["host"])
                nested = conn.begin_nested()
                conn.execute(stmt)
                mine = conn.execute(
                    sa.select(sa.func.count()).where(
                        ops_host_locks.c.host.in_(hosts), ops_host_locks.c.run_id == row.id
                    )
                ).scalar_one()
                if mine != len(hosts):  # another worker took one of them meanwhile
                    nested.rollback()
                    continue
                nested.commit()
            conn.execute(
                ops_runs.update()
                .where(ops_runs.c.id == row.id)
                .values(
                    state="running",
                    worker=worker,
                    attempts=ops_runs.c.attempts + 1,
                    started_at=sa.func.coalesce(ops_runs.c.started_at, sa.func.now()),
                )
            )
            claimed = row.id
            break
        else:
            return None
    run = get(cfg, claimed)
    _publish(cfg, "ops.started", run.id, run.action, run.hosts, attempt=run.attempts)
    return run


def finish(
    cfg: Settings,
    run: Run,
    state: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """End a run: store its state and result, free its hosts, audit it with before/after."""
    result = result or {}
    with get_engine(cfg.database_url).begin() as conn:
        mine = conn.execute(
            ops_runs.update()
            .where(
                ops_runs.c.id == run.id,
                ops_runs.c.state == "running",
                ops_runs.c.worker == run.worker,
            )
            .values(state=state, result=result, error=error, finished_at=sa.func.now())
        ).rowcount
        if not mine:  # recovered meanwhile (its owner's lock was lost): that took over
            log.warning("ops run %s was recovered by another worker; not finishing it", run.id)
            return
        conn.execute(ops_host_locks.delete().where(ops_host_locks.c.run_id == run.id))
        outcome = {"succeeded": "ok", "cancelled": "cancelled"}.get(
            state, f"failed: {(error or 'failed')[:200]}"
        )
        audit.record(
            cfg.database_url,
            run.identity,
            audit.Entry(
                f"ops.{run.action}",
                ",".join(run.hosts) or "-",
                outcome,
                {"run": run.id, "dry_run": run.dry_run, **run.params},
                run.reason,
                before=result.get("before"),
                after=result.get("after"),
            ),
            conn=conn,
        )
    _publish(
        cfg,
        "ops.finished",
        run.id,
        run.action,
        run.hosts,
        state=state,
        error=error,
        dry_run=run.dry_run,
    )


# -- reading -------------------------------------------------------------------------------------
def get(cfg: Settings, run_id: int) -> Run:
    """A run with its steps; one clear error for an unknown id."""
    with get_engine(cfg.database_url).connect() as conn:
        row = conn.execute(sa.select(ops_runs).where(ops_runs.c.id == run_id)).first()
        if row is None:
            raise PortalError(f"no ops run {run_id}")
        steps = [
            Step(s.seq, s.host, s.name, s.state, s.detail, s.started_at, s.finished_at)
            for s in conn.execute(
                sa.select(ops_steps).where(ops_steps.c.run_id == run_id).order_by(ops_steps.c.seq)
            )
        ]
    return _run(row, steps)


def history(
    cfg: Settings,
    limit: int = 50,
    host: str | None = None,
    action: str | None = None,
    before_id: int | None = None,
) -> list[Run]:
    """Runs newest first (without steps), optionally of one host or action."""
    query = sa.select(ops_runs).order_by(ops_runs.c.id.desc()).limit(max(1, min(limit, 1000)))
    if host:
        query = query.where(sa.literal(host) == sa.any_(ops_runs.c.hosts))
    if action:
        query = query.where(ops_runs.c.action == action)
    if before_id is not None:
        query = query.where(ops_runs.c.id < before_id)
    with get_engine(cfg.database_url).connect() as conn:
        return [_run(r) for r in conn.execute(query)]


def locks(cfg: Settings) -> dict[str, int]:
    """Locked hosts and the run holding each."""
    with get_engine(cfg.database_url).connect() as conn:
        return dict(conn.execute(sa.select(ops_host_locks.c.host, ops_host_locks.c.run_id)).all())


def workers_alive(cfg: Settings) -> int:
    """How many ops workers run against this database now (they hold a shared advisory lock)."""
    with get_engine(cfg.database_url).connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = :ns AND granted AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"ns": WORKER_NS},
            ).scalar_one()
        )
