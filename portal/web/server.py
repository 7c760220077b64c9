"""``portal web``: the app under gunicorn, with a plugin watcher in the master process.

The watcher polls the quicklook folders' file times twice a second; on a change it sends the
master SIGHUP, which makes gunicorn start fresh workers (that import the plugins anew) and
retire the old ones gracefully: a new or edited plugin is live in a few seconds, no restart.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from portal.settings import Settings
from portal.web import loader, sources

log = logging.getLogger("portal.web.server")
POLL_SECONDS = 0.5
#: Requests a worker serves at once. Threads, not more processes: most of a request's time is
#: waiting on PostgreSQL or Prometheus, and a slow query must not hold up /healthz behind it.
#: Each worker's database pool (``portal.db.engine``) holds at least this many connections.
THREADS = 8
#: Imported in the master before forking, so a reloaded worker starts in about a second.
PRELOAD = ("numpy", "pandas", "plotly.graph_objects", "dash", "flask", "sqlalchemy", "psycopg")


def snapshot(folders: list[Path]) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every plugin file: what the watcher compares."""
    state: dict[str, tuple[int, int]] = {}
    for file in loader.plugin_files(folders):
        try:
            st = file.stat()
        except FileNotFoundError:
            continue
        state[str(file)] = (st.st_mtime_ns, st.st_size)
    return state


def watch(
    folders: list[Path],
    on_change: Any,
    stop: threading.Event,
    before: dict[str, tuple[int, int]] | None = None,
) -> None:
    """Call ``on_change(changed_files)`` whenever a plugin file appears, changes or goes."""
    before = snapshot(folders) if before is None else before
    while not stop.wait(POLL_SECONDS):
        now = snapshot(folders)
        if now != before:
            changed = sorted(set(now.items()) ^ set(before.items()))
            before = now
            on_change(sorted({name for name, _ in changed}))


class PortalServer(BaseApplication):
    """gunicorn configured from settings, serving ``create_app(cfg)`` in each worker."""

    def __init__(self, cfg: Settings, extra: dict[str, Any] | None = None) -> None:
        self.portal_cfg = cfg
        self.extra = extra or {}
        self._stop = threading.Event()
        super().__init__()

    def load_config(self) -> None:
        options = {
            "bind": self.portal_cfg.web_bind,
            "workers": self.portal_cfg.web_workers,
            "worker_class": "gthread",
            "threads": THREADS,
            "timeout": 60,
            "graceful_timeout": 10,
            "accesslog": None,
            # gunicorn's control socket defaults to one path per user: two portals (tests,
            # make run) would fight over it, and nothing here uses it.
            "control_socket_disable": True,
            "loglevel": self.portal_cfg.log_level.lower(),
            "when_ready": self._when_ready,
            "child_exit": _child_exit,
            **self.extra,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from portal.web.app import create_app

        return create_app(self.portal_cfg)

    def _when_ready(self, arbiter: Any) -> None:
        folders = sources.quicklook_folders(self.portal_cfg)
        master = os.getpid()

        def reload(files: list[str]) -> None:
            arbiter.log.info("quicklook files changed (%s): reloading workers", ", ".join(files))
            os.kill(master, signal.SIGHUP)

        thread = threading.Thread(
            target=watch, args=(folders, reload, self._stop), name="quicklook-watcher", daemon=True
        )
        thread.start()
        arbiter.log.info("watching %s for quicklook changes", ", ".join(map(str, folders)))


def _child_exit(_server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def prepare_metrics_dir(cfg: Settings) -> Path:
    """A fresh directory for prometheus_client's multiprocess files (set before any import)."""
    path = cfg.data_dir / "web-metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def serve(cfg: Settings) -> None:
    """Run gunicorn in the foreground until SIGTERM/SIGINT."""
    import importlib

    from portal.settings import check_port_free

    host, _, port = cfg.web_bind.rpartition(":")
    check_port_free("PORTAL_WEB_BIND", host, int(port))
    prepare_metrics_dir(cfg)
    for name in PRELOAD:
        importlib.import_module(name)
    PortalServer(cfg).run()
