"""The ops worker (``portal ops worker``, started by ``portal run``): claims queued runs and
executes them, a few side by side, never two on one host.

It holds two advisory locks on its own connection: its owner key (``runs.owner_key``), whose
release after a crash or kill -9 lets the next sweep recover its runs, and a shared "a worker
is running" lock the CLI checks. It wakes on the ``ops.requested`` event (``LISTEN``) or every
second, and between runs does the periodic duties of the registered ``TICKS`` (maintenance
windows ending, desired state).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from portal import settings
from portal.db.engine import connect_raw
from portal.errors import PortalError
from portal.events.bus import CHANNEL
from portal.ops import runs
from portal.ops.executor import DryRunExecutor, Executor, SshExecutor
from portal.settings import Settings

log = logging.getLogger(__name__)
IDLE_WAIT_S = 1.0

#: Periodic duties ``(name, "module:function", seconds)``; each is called as ``function(cfg)``.
TICKS: list[tuple[str, str, float]] = [
    ("maintenance", "portal.ops.maintenance:tick", 5.0),
    ("desired-state", "portal.ops.desired:tick", 10.0),
]


def make_executor(cfg: Settings) -> Executor:
    """``PORTAL_OPS_EXECUTOR``: ``ssh`` (the real thing) or ``dry-run`` (a demo without hosts)."""
    from portal.ops.ssh import SshConfig

    if cfg.extra.get("PORTAL_OPS_EXECUTOR") == "dry-run":
        return DryRunExecutor(lambda line: log.info("%s", line))
    return SshExecutor(SshConfig.from_settings(cfg.extra))


@dataclass
class Worker:
    cfg: Settings
    threads: int = 4
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.key = runs.owner_key(self.cfg.database_url)
        self.executor = make_executor(self.cfg)
        self.active: dict[int, threading.Thread] = {}
        self._next_tick: dict[str, float] = {}
        self._listen: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        conn = connect_raw(self.cfg.database_url, autocommit=True)
        conn.execute("SELECT pg_advisory_lock_shared(%s, 0)", (runs.WORKER_NS,))
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _wait(self, seconds: float) -> None:
        """Sleep until an event arrives (a run was requested) or ``seconds`` pass."""
        try:
            if self._listen is None or self._listen.closed:
                self._listen = self._connect()
            for _ in self._listen.notifies(timeout=seconds, stop_after=1):
                pass
        except psycopg.Error as exc:
            log.warning("ops worker: database connection lost (%s)", exc)
            self._listen = None
            self.stop.wait(seconds)

    def run_one(self, run: runs.Run) -> None:
        from portal.ops.context import execute

        try:
            state = execute(
                self.cfg, run, self.executor, say=lambda m: log.info("run %s %s", run.id, m)
            )
            log.info("ops run %s (%s on %s): %s", run.id, run.action, ",".join(run.hosts), state)
        except Exception:  # the database went away while finishing: the sweep recovers it
            log.exception("ops run %s could not be finished", run.id)

    def tick(self) -> None:
        """One round: recover orphans, start what can start, do periodic duties."""
        for done in [rid for rid, t in self.active.items() if not t.is_alive()]:
            del self.active[done]
        self.key = runs.owner_key(self.cfg.database_url)  # first: re-held after a lost link
        recovered = runs.recover_orphans(self.cfg)
        if recovered:
            log.warning("ops worker: recovered runs of a worker that ended: %s", recovered)
        while len(self.active) < self.threads:
            run = runs.claim(self.cfg, self.key)
            if run is None:
                break
            thread = threading.Thread(target=self.run_one, args=(run,), name=f"run-{run.id}")
            self.active[run.id] = thread
            thread.start()
        now = time.monotonic()
        for name, target, every in TICKS:
            if now < self._next_tick.get(name, 0.0):
                continue
            self._next_tick[name] = now + every
            try:
                runs.function(target, f"ops tick {name}")(self.cfg)
            except Exception as exc:  # one failing duty must not stop the others
                log.warning(
                    "ops worker: %s: %s",
                    name,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )

    def serve(self) -> None:
        """Until ``stop``: tick, then wait for an event or a second; let runs end on stop."""
        self._listen = self._connect()
        log.info("ops worker %s started (%d threads)", self.key, self.threads)
        while not self.stop.is_set():
            try:
                self.tick()
            except (PortalError, psycopg.Error, OSError) as exc:
                log.warning("ops worker: %s", str(exc).splitlines()[0] if str(exc) else exc)
            except Exception as exc:  # SQLAlchemy errors while the database restarts
                log.warning("ops worker: %s: %s", type(exc).__name__, str(exc).splitlines()[0])
            self._wait(IDLE_WAIT_S)
        for thread in self.active.values():
            thread.join()
        self.executor.close()
        if self._listen is not None:
            self._listen.close()


def main(threads: int | None = None, on_start: Callable[[Worker], None] | None = None) -> None:
    """Entry point of the ``ops-worker`` component; SIGTERM lets running actions finish."""
    cfg = settings.get()
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(message)s")
    worker = Worker(cfg, threads or int(cfg.extra.get("PORTAL_OPS_WORKER_THREADS") or 4))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop.set())
    if on_start is not None:
        on_start(worker)
    worker.serve()
