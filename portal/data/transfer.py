"""Transfer workers: take queued requests, copy with rsync over SSH, verify, mark replicas.

Several workers may run. A worker takes a request under one advisory lock (so a site's
``max_active`` holds across workers), holds it with a lease it renews while copying, and marks
the replica AVAILABLE only after the site's own checksum of the final file matches the catalog.
rsync writes to a temporary name and keeps interrupted files in its partial dir, so a partial
file is never at the final path. After ``kill -9`` the lease runs out and another worker takes
the same request (one row per product and site: never a second replica); rsync resumes.
Failures go back to the queue with doubling back-off until the attempts run out (FAILED).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portal.data import checksum as checksums
from portal.data import settings as data_settings
from portal.data import sites as site_ops
from portal.db.engine import connect_raw
from portal.errors import BackendUnavailable, PortalError
from portal.events import bus as events
from portal.settings import Settings

log = logging.getLogger(__name__)
CLAIM_LOCK = 0x0DA7A_C1A1  # advisory lock taken while choosing a request
MAX_BACKOFF_S = 3600.0
_PROGRESS = re.compile(rb"^\s*([\d,]+)\s+\d+%")

#: rsync exit codes -> error class shown on the Transfers page
RSYNC_CLASSES = {
    255: "unreachable",
    12: "protocol",
    10: "unreachable",
    11: "io",
    23: "io",
    24: "vanished",
    30: "timeout",
    35: "timeout",
}


@dataclass(frozen=True)
class Job:
    request_id: int
    product_id: int
    site: str
    name: str
    path: str
    size: int
    checksum: str | None
    attempts: int
    force: bool  # the copy at the site was BAD: rewrite it


class TransferError(Exception):
    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


class Worker:
    """One transfer worker (``portal data worker``): ``run_once`` copies one batch.

    A batch is the due requests of one site, at most ``BATCH_FILES`` files and ``BATCH_BYTES``
    bytes (a large file goes alone): one rsync and one checksum command at the site for all of
    them, so many small files do not each pay for a process and an SSH session.
    """

    BATCH_FILES = 64
    BATCH_BYTES = 256 << 20

    def __init__(self, cfg: Settings, name: str = "") -> None:
        self.cfg, self.url = cfg, cfg.database_url
        self.name = name or f"{socket.gethostname().split('.')[0]}:{os.getpid()}"
        self.lease_s = float(data_settings.value(cfg, "PORTAL_DATA_TRANSFER_LEASE"))
        self.max_attempts = int(data_settings.value(cfg, "PORTAL_DATA_TRANSFER_ATTEMPTS"))
        self.backoff_s = float(data_settings.value(cfg, "PORTAL_DATA_RETRY_BACKOFF"))

    # -- taking requests -----------------------------------------------------------------------
    def claim(self, site: str = "") -> list[Job]:
        """The next due requests of one site with a free slot (``max_active`` counts workers),
        now SUBMITTED to this worker."""
        with connect_raw(self.url, autocommit=True) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
            first = conn.execute(
                """
                SELECT t.site FROM transfer_requests t JOIN data_sites s ON s.name = t.site
                WHERE ((t.state = 'QUEUED' AND t.next_attempt_at <= now())
                       OR (t.state = 'SUBMITTED' AND t.lease_until < now()))
                  AND (%(site)s = '' OR t.site = %(site)s)
                  AND (SELECT count(DISTINCT a.worker) FROM transfer_requests a
                       WHERE a.site = t.site AND a.state = 'SUBMITTED'
                       AND a.lease_until >= now()) < s.max_active
                ORDER BY t.next_attempt_at, t.id LIMIT 1
                """,
                {"site": site},
            ).fetchone()
            if first is None:
                return []
            picked = conn.execute(
                """
                SELECT t.id FROM transfer_requests t JOIN data_products p ON p.id = t.product_id
                WHERE t.site = %(site)s
                  AND ((t.state = 'QUEUED' AND t.next_attempt_at <= now())
                       OR (t.state = 'SUBMITTED' AND t.lease_until < now()))
                ORDER BY t.next_attempt_at, t.id LIMIT %(n)s
                """,
                {"site": first[0], "n": self.BATCH_FILES},
            ).fetchall()
            ids = [r[0] for r in picked]
            got = conn.execute(
                """
                UPDATE transfer_requests t SET state = 'SUBMITTED', worker = %s,
                  lease_until = now() + make_interval(secs => %s), attempts = t.attempts + 1,
                  started_at = now(), updated_at = now(), bytes_done = 0,
                  bytes_total = p.size_bytes
                FROM data_products p WHERE t.id = ANY(%s) AND p.id = t.product_id
                RETURNING t.id, p.id, t.site, p.name, p.path, p.size_bytes, p.checksum,
                  t.attempts
                """,
                (self.name, self.lease_s, ids),
            ).fetchall()
            got.sort(key=lambda r: ids.index(r[0]))
            jobs: list[Any] = []
            total = 0
            for row in got:
                if jobs and total + int(row[5]) > self.BATCH_BYTES:
                    break
                jobs.append(row)
                total += int(row[5])
            rest = [r[0] for r in got[len(jobs) :]]
            if rest:  # over the byte limit: back to the queue as they were
                conn.execute(
                    "UPDATE transfer_requests SET state = 'QUEUED', worker = NULL, "
                    "lease_until = NULL, attempts = attempts - 1 WHERE id = ANY(%s)",
                    (rest,),
                )
            where = site_ops.load(self.url, first[0])
            out = []
            for rid, pid, site_name, name, path, size, digest, attempts in jobs:
                try:
                    dest = where.path_of(name)
                except PortalError as exc:  # a name no site can hold: never copyable
                    conn.execute(
                        "UPDATE transfer_requests SET state = 'FAILED', last_error = %s, "
                        "error_class = 'name', lease_until = NULL, finished_at = now() "
                        "WHERE id = %s",
                        (str(exc), rid),
                    )
                    continue
                bad = conn.execute(
                    """
                    INSERT INTO replicas (product_id, site, path, state, attempts, requested_at)
                    VALUES (%s, %s, %s, 'COPYING', 1, now())
                    ON CONFLICT (product_id, site) DO UPDATE SET
                      state = CASE WHEN replicas.state = 'BAD' THEN 'BAD' ELSE 'COPYING' END,
                      attempts = replicas.attempts + 1, path = excluded.path, updated_at = now()
                    RETURNING state = 'BAD'
                    """,
                    (pid, site_name, dest),
                ).fetchone()
                force = bool(bad and bad[0])
                out.append(Job(rid, pid, site_name, name, path, size, digest, attempts, force))
        return out

    # -- doing it ------------------------------------------------------------------------------
    def run_once(self, site: str = "") -> bool:
        """Copy one batch if one is due; False when nothing was."""
        jobs = self.claim(site)
        if not jobs:
            return False
        try:
            results = self._copy(jobs)
        except Exception as exc:  # noqa: BLE001 - any surprise is the batch's error, not a crash
            log.exception("transfer batch to %s", jobs[0].site)
            results = {
                j.request_id: TransferError("internal", f"{type(exc).__name__}: {exc}")
                for j in jobs
            }
        for job in jobs:
            outcome = results.get(job.request_id)
            if isinstance(outcome, TransferError):
                self._failed(job, outcome.error_class, str(outcome))
            elif outcome is not None:
                self._done(job, outcome)
        return True

    def _copy(self, jobs: list[Job]) -> dict[int, str | TransferError]:
        """Copy the batch with one rsync, verify with one checksum command at the site;
        returns each request's verified checksum or its error."""
        site = site_ops.load(self.url, jobs[0].site)
        results: dict[int, str | TransferError] = {}
        ready = []
        for job in jobs:
            if os.path.isfile(job.path):
                ready.append(job)
            else:
                results[job.request_id] = TransferError(
                    "source-missing", f"source file {job.path} does not exist"
                )
        if not ready:
            return results
        if site.scheme == "globus":
            return {**results, **self._copy_globus(site, ready)}
        ready.sort(key=lambda j: site.relative(j.name))
        with tempfile.TemporaryDirectory(prefix="obsportal-batch-") as stage:
            names = []
            for job in ready:  # the batch's layout at the site, as links to the sources
                rel = site.relative(job.name)
                link = Path(stage) / rel
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.abspath(job.path))
                names.append(rel)
            listing = Path(stage) / ".files"
            listing.write_text("".join(n + "\n" for n in names))
            argv = site.batch_argv(stage, listing, force=any(j.force for j in ready))
            code, error = self._rsync(argv, ready)
        rsync_error = None
        if code != 0:
            rsync_error = TransferError(RSYNC_CLASSES.get(code, "rsync"), f"rsync: {error}")
        expected = {j.request_id: j.checksum or checksums.of_file(Path(j.path)) for j in ready}
        by_algo: dict[str, list[Job]] = {}
        for job in ready:
            by_algo.setdefault(checksums.parse(expected[job.request_id])[0], []).append(job)
        for algo, group in by_algo.items():
            try:
                found = site.checksums([site.path_of(j.name) for j in group], algo)
            except PortalError as exc:
                for job in group:
                    results[job.request_id] = rsync_error or TransferError("verify", str(exc))
                continue
            for job in group:
                got = found.get(site.path_of(job.name))
                want = expected[job.request_id]
                if got is None:
                    results[job.request_id] = rsync_error or TransferError(
                        "verify", f"{job.name} is missing at {job.site} after the copy"
                    )
                elif got != want:
                    error = f"checksum mismatch at {job.site}: expected {want}, got {got}"
                    self._mark_bad(job, error)
                    results[job.request_id] = TransferError("checksum", error)
                else:
                    results[job.request_id] = got
        return results

    def _copy_globus(self, site: site_ops.Site, jobs: list[Job]) -> dict[int, str | TransferError]:
        """One Globus task for the batch; Globus verifies each file's checksum at the
        destination (``verify_checksum``), so SUCCEEDED makes every copy AVAILABLE."""
        from portal.data import globus

        adapter, _root = globus.for_site(site.url, site.options)
        label = f"obsportal {jobs[0].name}" + (f" +{len(jobs) - 1}" if len(jobs) > 1 else "")
        try:
            task = adapter.submit([(j.path, site.path_of(j.name)) for j in jobs], label)
        except PortalError as exc:
            kind = "unreachable" if isinstance(exc, BackendUnavailable) else "globus"
            return {j.request_id: TransferError(kind, str(exc)) for j in jobs}
        stop, done = threading.Event(), [0]
        beat = threading.Thread(target=self._heartbeat, args=(jobs, stop, done), daemon=True)
        beat.start()
        poll = float(site.options.get("poll_seconds", 10))
        try:
            while True:
                try:
                    state = adapter.status(task)
                except BackendUnavailable:
                    stop.wait(poll)  # Globus unreachable for a moment: the task runs on
                    continue
                done[0] = state.bytes_transferred
                if state.finished:
                    break
                stop.wait(poll)
        except PortalError as exc:
            return {j.request_id: TransferError("globus", str(exc)) for j in jobs}
        finally:
            stop.set()
            beat.join(5)
        if state.status != "SUCCEEDED":
            error = TransferError("globus", f"Globus task {task} {state.status}: {state.problem()}")
            return {j.request_id: error for j in jobs}
        return {j.request_id: j.checksum or checksums.of_file(Path(j.path)) for j in jobs}

    def _rsync(self, argv: list[str], jobs: list[Job]) -> tuple[int, str]:
        """Run rsync while renewing the batch's lease; returns its exit code and last error."""
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=site_ops.die_with_parent,  # noqa: PLW1509 - sets PDEATHSIG only
        )
        stop = threading.Event()
        done = [0]
        beat = threading.Thread(target=self._heartbeat, args=(jobs, stop, done), daemon=True)
        beat.start()
        err_lines: list[bytes] = []
        reader = threading.Thread(
            target=lambda: err_lines.extend(proc.stderr.readlines() if proc.stderr else []),
            daemon=True,
        )
        reader.start()
        try:
            self._progress(proc, done)
            code = proc.wait()
        finally:
            stop.set()
            beat.join(5)
            reader.join(5)
        text = b"".join(err_lines).decode(errors="replace").strip().splitlines()
        return code, (text[-1] if text else f"rsync exited with {code}")

    def _progress(self, proc: subprocess.Popen[bytes], done: list[int]) -> None:
        """Bytes copied so far, from rsync's ``--info=progress2`` lines."""
        assert proc.stdout is not None
        buf = b""
        while chunk := proc.stdout.read1(4096):  # type: ignore[attr-defined]
            buf += chunk
            *parts, buf = re.split(rb"[\r\n]", buf)
            for part in parts:
                m = _PROGRESS.match(part)
                if m:
                    done[0] = int(m[1].replace(b",", b""))

    def _heartbeat(self, jobs: list[Job], stop: threading.Event, done: list[int]) -> None:
        """Renew the batch's lease and report progress (files in order) while rsync runs."""
        while not stop.wait(max(self.lease_s / 3, 0.2)):
            left, rows = done[0], []
            for job in jobs:
                rows.append((min(max(left, 0), job.size), job.request_id))
                left -= job.size
            try:
                with connect_raw(self.url, autocommit=True) as conn, conn.cursor() as cur:
                    cur.executemany(
                        "UPDATE transfer_requests SET lease_until = now() + "
                        f"make_interval(secs => {float(self.lease_s)}), bytes_done = %s, "
                        "updated_at = now() WHERE id = %s AND worker = %s AND state = 'SUBMITTED'",
                        [(d, rid, self.name) for d, rid in rows],
                    )
            except Exception as exc:  # noqa: BLE001 - the lease may lapse; another worker retries
                log.warning("transfer lease of %d file(s) not renewed: %s", len(jobs), exc)

    def _mark_bad(self, job: Job, error: str) -> None:
        with connect_raw(self.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE replicas SET state = 'BAD', last_error = %s, updated_at = now() "
                "WHERE product_id = %s AND site = %s",
                (error, job.product_id, job.site),
            )
        events.publish(
            self.url,
            "data.replica.bad",
            {"product": job.name, "site": job.site, "error": error},
            source="data-worker",
        )

    def _done(self, job: Job, checksum: str) -> None:
        with connect_raw(self.url, autocommit=True) as conn, conn.transaction():
            owned = conn.execute(
                "UPDATE transfer_requests SET state = 'DONE', finished_at = now(), "
                "updated_at = now(), bytes_done = bytes_total, last_error = NULL, "
                "error_class = NULL, lease_until = NULL "
                "WHERE id = %s AND worker = %s AND state = 'SUBMITTED' RETURNING id",
                (job.request_id, self.name),
            ).fetchone()
            if owned is None:  # the lease lapsed and another worker has it: it will finish
                return
            conn.execute(
                "UPDATE replicas SET state = 'AVAILABLE', checksum = %s, size_bytes = %s, "
                "verified_at = now(), last_error = NULL, updated_at = now() "
                "WHERE product_id = %s AND site = %s",
                (checksum, job.size, job.product_id, job.site),
            )
        events.publish(
            self.url,
            "data.transfer.done",
            {"product": job.name, "site": job.site, "bytes": job.size, "attempts": job.attempts},
            source="data-worker",
        )

    def _failed(self, job: Job, error_class: str, message: str) -> None:
        final = job.attempts >= self.max_attempts
        delay = min(self.backoff_s * 2 ** (job.attempts - 1), MAX_BACKOFF_S)
        with connect_raw(self.url, autocommit=True) as conn, conn.transaction():
            conn.execute(
                "UPDATE transfer_requests SET state = %s, last_error = %s, error_class = %s, "
                "next_attempt_at = now() + make_interval(secs => %s), lease_until = NULL, "
                "finished_at = CASE WHEN %s THEN now() END, updated_at = now() "
                "WHERE id = %s AND worker = %s AND state = 'SUBMITTED'",
                (
                    "FAILED" if final else "QUEUED",
                    message,
                    error_class,
                    delay,
                    final,
                    job.request_id,
                    self.name,
                ),
            )
            conn.execute(
                "UPDATE replicas SET last_error = %s, updated_at = now(), state = CASE WHEN "
                "state = 'BAD' THEN 'BAD' WHEN %s THEN 'UNAVAILABLE' ELSE state END "
                "WHERE product_id = %s AND site = %s",
                (message, final, job.product_id, job.site),
            )
        events.publish(
            self.url,
            "data.transfer.failed",
            {
                "product": job.name,
                "site": job.site,
                "error_class": error_class,
                "error": message,
                "attempt": job.attempts,
                "final": final,
            },
            source="data-worker",
        )

    def run(self, site: str = "", idle_s: float = 2.0, stop: threading.Event | None = None) -> None:
        """Forever: copy while there is work, then wait ``idle_s`` (``stop`` ends the loop)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                busy = self.run_once(site)
            except Exception as exc:  # noqa: BLE001 - database away: wait and try again
                log.warning("transfer worker: %s", str(exc).splitlines()[0] if str(exc) else exc)
                busy = False
            if not busy:
                stop.wait(idle_s)


def run_threads(
    cfg: Settings, threads: int, site: str = "", stop: threading.Event | None = None
) -> None:
    """``threads`` workers in this process (each its own name, so leases stay apart)."""
    stop = stop or threading.Event()
    base = f"{socket.gethostname().split('.')[0]}:{os.getpid()}"
    pool = [
        threading.Thread(
            target=Worker(cfg, f"{base}/{i}").run, args=(site,), kwargs={"stop": stop}, daemon=True
        )
        for i in range(threads)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
