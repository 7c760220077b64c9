"""What an action's ``run`` function gets: ``RunContext`` (steps, commands, progress), and
``execute``, which calls it and finishes the run.

Every step is stored (``ops_steps``), published (event ``ops.step``) and, outside dry runs,
audited (``ops.<action>.step``). ``ctx.command(host, verb, **args)`` renders a verb of the site's
allow-list (``portal.ops.templates``), runs it through the executor and records it as a step.
In a dry run the executor records the command lines and runs nothing; actions skip their own
side effects (silences, database changes) and waits when ``ctx.dry_run`` is true.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa

from portal.auth import audit
from portal.auth.roles import at_least
from portal.db.engine import get_engine
from portal.errors import PortalError
from portal.events import bus
from portal.ops import templates
from portal.ops.executor import Executor, LocalExecutor, Result, Target, targets
from portal.ops.runs import ActionFailed, Run, actions, finish, function
from portal.ops.tables import ops_runs, ops_steps
from portal.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
DEFAULT_TIMEOUT_S = 60.0


class Cancelled(ActionFailed):
    """An operator cancelled the run; it stops before its next step."""


class StepHandle:
    """A step in progress: add to its detail, or mark it skipped, before it ends."""

    def __init__(self, seq: int, host: str, name: str, detail: str) -> None:
        self.seq, self.host, self.name = seq, host, name
        self.lines = [detail] if detail else []
        self.state = "succeeded"

    def note(self, text: str) -> None:
        self.lines.append(text)

    def skip(self, why: str) -> None:
        self.state = "skipped"
        self.lines.append(why)

    @property
    def detail(self) -> str:
        return "; ".join(line for line in self.lines if line)[:4000]


class RunContext:
    """The run being executed, and the ways an action acts and reports (see module docstring)."""

    def __init__(
        self,
        cfg: Settings,
        run: Run,
        executor: Executor,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg, self.run, self.executor = cfg, run, executor
        self.dry_run = run.dry_run
        self.local: Executor = executor if run.dry_run else LocalExecutor()
        self.params: dict[str, Any] = dict(run.params)
        self.hosts: tuple[str, ...] = run.hosts
        self.progress: dict[str, Any] = dict(run.progress)
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        self.verbs = templates.site_verbs(cfg.extra)
        self.timeout = float(cfg.extra.get("PORTAL_OPS_COMMAND_TIMEOUT") or DEFAULT_TIMEOUT_S)
        self._say = say
        self._lock = threading.Lock()
        self._seq = max((s.seq for s in run.steps), default=0)
        self._targets: dict[str, Target] = targets(cfg.database_url, run.hosts)

    # -- reporting -------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self._say is not None:
            self._say(text)

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    @contextmanager
    def step(self, name: str, host: str = "", detail: str = "") -> Iterator[StepHandle]:
        """A recorded step: ``running`` now, then ``succeeded`` (or ``skipped``), or ``failed``
        with the error's line when the block raises (the error goes on)."""
        self.check_cancelled()
        handle = StepHandle(self._next_seq(), host, name, detail)
        url = self.cfg.database_url
        with get_engine(url).begin() as conn:
            conn.execute(
                sa.insert(ops_steps).values(
                    run_id=self.run.id,
                    seq=handle.seq,
                    host=host,
                    name=name,
                    state="running",
                    detail=handle.detail,
                    started_at=sa.func.now(),
                )
            )
        self._event(handle, "running")
        self.say(f"[{handle.seq}] {host or '-'} {name} ...")
        try:
            yield handle
        except BaseException as exc:
            handle.state = "failed"
            handle.note(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
            self._end(handle)
            raise
        self._end(handle)

    def _end(self, handle: StepHandle) -> None:
        with get_engine(self.cfg.database_url).begin() as conn:
            conn.execute(
                ops_steps.update()
                .where(ops_steps.c.run_id == self.run.id, ops_steps.c.seq == handle.seq)
                .values(state=handle.state, detail=handle.detail, finished_at=sa.func.now())
            )
            if not self.dry_run:
                outcome = {"succeeded": "ok"}.get(handle.state, handle.state)
                audit.record(
                    self.cfg.database_url,
                    self.run.identity,
                    audit.Entry(
                        f"ops.{self.run.action}.step",
                        handle.host or "-",
                        outcome,
                        {"run": self.run.id, "seq": handle.seq, "step": handle.name},
                        self.run.reason,
                        after={"detail": handle.detail},
                    ),
                    conn=conn,
                )
        self._event(handle, handle.state)
        self.say(
            f"[{handle.seq}] {handle.host or '-'} {handle.name}: {handle.state}"
            + (f" ({handle.detail})" if handle.detail else "")
        )

    def _event(self, handle: StepHandle, state: str) -> None:
        payload = {
            "run": self.run.id,
            "action": self.run.action,
            "seq": handle.seq,
            "host": handle.host,
            "step": handle.name,
            "state": state,
            "detail": handle.detail,
            "dry_run": self.dry_run,
        }
        bus.publish(self.cfg.database_url, "ops.step", payload, source="ops")

    # -- acting ------------------------------------------------------------------------------------
    def target(self, host: str) -> Target:
        """Where ``host``'s SSH server is (from the inventory)."""
        if host not in self._targets:
            self._targets.update(targets(self.cfg.database_url, [host]))
        return self._targets[host]

    def command(
        self,
        host: str,
        verb: str,
        *,
        timeout: float | None = None,
        check: bool = True,
        step: str | None = None,
        **args: Any,
    ) -> Result:
        """Run the site's ``verb`` on ``host`` with ``args`` (``host`` is filled in), as a step.

        ``check``: a non-zero exit fails the step and raises ``ActionFailed``.
        """
        spec = self.verbs.get(verb)
        with self.step(step or verb, host) as handle:
            if spec is None:
                raise ActionFailed(f"{verb!r} is not an allowed command (see PORTAL_OPS_COMMANDS)")
            if not at_least(self.run.role, spec.role):
                raise ActionFailed(
                    f"command {verb!r} needs a run requested by role {spec.role}, "
                    f"this one by {self.run.role or 'none'}"
                )
            argv = templates.render(spec, {"host": host, **args})
            handle.note(("would run: " if self.dry_run else "$ ") + templates.shown(argv))
            where = self.target(host)
            runner = self.local if spec.where == "local" else self.executor
            result = runner.run(where, argv, timeout or self.timeout)
            if not self.dry_run:
                handle.note(result.summary())
            if check and not result.ok:
                raise ActionFailed(f"{host}: {verb} failed ({result.summary()})")
            return result

    def parallel(self, fn: Callable[[T], R], items: Iterable[T], width: int = 8) -> list[R]:
        """``fn`` over ``items`` side by side (a batch of hosts); results in order, first error
        raised after all finished."""
        todo = list(items)
        if not todo:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(width, len(todo)))) as pool:
            futures = [pool.submit(fn, item) for item in todo]
            errors = [f.exception() for f in futures]
        for exc in errors:
            if exc is not None:
                raise exc
        return [f.result() for f in futures]

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float, interval: float = 1.0
    ) -> bool:
        """Poll ``predicate`` until true or ``timeout`` s pass (True at once in a dry run); a
        cancel request stops the wait."""
        if self.dry_run:
            return True
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            self.check_cancelled()
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

    def save_progress(self, **values: Any) -> None:
        """Persist what a resumable action has done (``ctx.progress`` after a restart)."""
        self.progress.update(values)
        with get_engine(self.cfg.database_url).begin() as conn:
            conn.execute(
                ops_runs.update().where(ops_runs.c.id == self.run.id).values(progress=self.progress)
            )

    def check_cancelled(self) -> None:
        """Raise ``Cancelled`` when an operator asked this run to stop, ``ActionFailed`` when
        it is no longer this worker's (recovered after its database connection was lost)."""
        with get_engine(self.cfg.database_url).connect() as conn:
            row = conn.execute(
                sa.select(ops_runs.c.cancel_requested, ops_runs.c.state, ops_runs.c.worker).where(
                    ops_runs.c.id == self.run.id
                )
            ).one()
        if row.state != "running" or row.worker != self.run.worker:
            raise ActionFailed("another worker took this run over; stopping here")
        if row.cancel_requested:
            raise Cancelled("cancelled by an operator")


def execute(
    cfg: Settings, run: Run, executor: Executor, say: Callable[[str], None] | None = None
) -> str:
    """Run the action's function for ``run`` and finish it; returns the final state."""
    action = actions(cfg).get(run.action)
    ctx: RunContext | None = None
    result: dict[str, Any] = {}
    try:
        if action is None or not action.run:
            raise ActionFailed(f"ops action {run.action!r} is not registered (or has no run)")
        fn = function(action.run, f"ops action {run.action}")
        ctx = RunContext(cfg, run, executor, say)
        result = dict(fn(ctx) or {})
        state, error = "succeeded", None
    except Cancelled as exc:
        state, error = "cancelled", str(exc)
    except PortalError as exc:
        state, error = "failed", (str(exc).strip().splitlines() or ["failed"])[0]
    except Exception as exc:  # a bug in an action: the run fails, the worker goes on
        log.exception("ops run %s (%s) crashed", run.id, run.action)
        state, error = "failed", f"internal error: {type(exc).__name__}: {exc}"
    if ctx is not None:
        result.setdefault("before", ctx.before or None)
        result.setdefault("after", ctx.after or None)
        if ctx.dry_run and hasattr(executor, "by_host"):
            result.setdefault("commands", executor.by_host())
    finish(cfg, run, state, result, error)
    return state
