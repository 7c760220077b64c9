"""Sites where copies live, and the few operations a transfer needs there (rsync over SSH).

A site's ``url`` is ``ssh://user@host:port/root`` (copied with rsync over SSH, checked with the
site's own ``sha256sum``), ``file:///root`` (a local filesystem, e.g. a mounted archive) or
``globus://COLLECTION/root`` (through ``portal.data.globus``).
This is the one module that runs ``ssh``/``rsync`` for the data capability.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from portal.data import checksum as checksums
from portal.data.tables import sites
from portal.db.engine import get_engine
from portal.errors import PortalError

PARTIAL_DIR = ".rsync-partial"  # rsync keeps interrupted files here: never at the final path


@dataclass(frozen=True)
class Site:
    """One row of ``data_sites``, with its URL taken apart."""

    name: str
    url: str
    max_active: int = 2
    bwlimit_kbps: int = 0
    capacity_bytes: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def root(self) -> str:
        return urlsplit(self.url).path or "/"

    @property
    def target(self) -> str:
        """``user@host`` for SSH sites."""
        parts = urlsplit(self.url)
        return f"{parts.username}@{parts.hostname}" if parts.username else str(parts.hostname)

    def relative(self, name: str) -> str:
        """Product ``name`` as a path below the site's root (never outside it)."""
        clean = posixpath.normpath("/" + name).lstrip("/")
        if not clean or clean.startswith("..") or "\n" in clean:
            raise PortalError(f"product name {name!r} cannot be a path at a site")
        return clean

    def path_of(self, name: str) -> str:
        """Where product ``name`` lives at this site."""
        return posixpath.join(self.root, self.relative(name))

    def ssh_argv(self) -> list[str]:
        """``ssh`` with strict host keys and no prompts (BatchMode)."""
        parts = urlsplit(self.url)
        argv = [
            "ssh",
            "-p",
            str(parts.port or 22),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
        ]
        if self.options.get("identity_file"):
            argv += ["-i", str(self.options["identity_file"])]
        if self.options.get("known_hosts"):
            argv += ["-o", f"UserKnownHostsFile={self.options['known_hosts']}"]
            argv += ["-o", "StrictHostKeyChecking=yes"]
        if self.options.get("multiplex", True):  # one SSH connection for many copies and checks
            argv += [
                "-o",
                "ControlMaster=auto",
                "-o",
                f"ControlPath={tempfile.gettempdir()}/obsportal-ssh-%C",
                "-o",
                "ControlPersist=30",
            ]
        return argv

    def run(self, argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` at the site (through SSH, or here for ``file://``)."""
        if self.scheme == "file":
            try:
                return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            except FileNotFoundError:  # as a shell says it: exit 127
                return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: not found")
        command = " ".join(shlex.quote(a) for a in argv)
        return subprocess.run(
            [*self.ssh_argv(), self.target, command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def checksum(self, path: str, algo: str) -> str:
        """The checksum of ``path`` computed at the site; ``PortalError`` when it cannot be."""
        found = self.checksums([path], algo)
        if path not in found:
            raise PortalError(f"checksum at {self.name}: {path} is missing or unreadable")
        return found[path]

    def checksums(self, paths: list[str], algo: str) -> dict[str, str]:
        """Checksums of several files in one command at the site (missing ones are absent):
        ``openssl dgst`` (hardware SHA) when the site has it, else coreutils."""
        proc = self.run(["openssl", "dgst", f"-{checksums.OPENSSL[algo]}", "-r", *paths])
        marker = " *"
        if proc.returncode == 127:  # no openssl there
            proc = self.run([checksums.TOOLS[algo], "--", *paths])
            marker = "  "
        found: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            digest, sep, path = line.partition(marker)
            if sep and checksums.is_hex(digest):
                found[path] = f"{algo}:{digest.lower()}"
        if not found and proc.returncode != 0 and "No such file" not in proc.stderr:
            raise PortalError(f"checksum at {self.name}: {_first(proc.stderr)}")
        return found

    def remove(self, path: str) -> None:
        proc = self.run(["rm", "-f", "--", path])
        if proc.returncode != 0:
            raise PortalError(f"rm at {self.name}: {_first(proc.stderr)}")

    def batch_argv(self, stage: str, listing: Path, *, force: bool = False) -> list[str]:
        """``rsync`` of the files named in ``listing`` (links in ``stage`` to the sources) to
        the same relative paths under the site's root."""
        argv = [
            "rsync",
            "--copy-links",
            "--times",
            "--mkpath",
            f"--files-from={listing}",
            f"--partial-dir={PARTIAL_DIR}",
            "--info=progress2",
        ]
        if self.bwlimit_kbps:
            argv.append(f"--bwlimit={self.bwlimit_kbps}")
        if force:
            argv.append("--ignore-times")
        root = self.root.rstrip("/") + "/"
        if self.scheme == "file":
            return [*argv, stage + "/", root]
        ssh = " ".join(shlex.quote(a) for a in self.ssh_argv())
        return [*argv, "-e", ssh, stage + "/", f"{self.target}:{root}"]


def _first(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def die_with_parent() -> None:
    """In a child: be killed when the worker dies (kill -9 leaves no orphan copy running)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.path.startswith("/"):
        return url
    if parts.scheme == "globus" and parts.hostname and parts.path.startswith("/"):
        return url
    if parts.scheme == "ssh" and parts.hostname and parts.path.startswith("/"):
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise PortalError(f"site URL {url!r} has a bad port") from None
        return url
    raise PortalError(
        f"site URL {url!r} is not ssh://user@host[:port]/root, file:///root or "
        "globus://COLLECTION/root"
    )


def load(url: str, name: str) -> Site:
    """The site named ``name``, or one clear error."""
    with get_engine(url).connect() as conn:
        row = conn.execute(sa.select(sites).where(sites.c.name == name)).first()
    if row is None:
        raise PortalError(f"no site named {name!r} (portal data site add)")
    m = row._mapping
    return Site(
        m["name"], m["url"], m["max_active"], m["bwlimit_kbps"], m["capacity_bytes"], m["options"]
    )


def all_sites(url: str) -> list[Site]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.select(sites).order_by(sites.c.name)).all()
    return [
        Site(r.name, r.url, r.max_active, r.bwlimit_kbps, r.capacity_bytes, r.options) for r in rows
    ]


def save(url: str, site: Site) -> dict[str, Any] | None:
    """Add or change a site; returns its previous row (for the audit log) or None."""
    from sqlalchemy.dialects.postgresql import insert

    check_url(site.url)
    values = {
        "name": site.name,
        "url": site.url,
        "max_active": site.max_active,
        "bwlimit_kbps": site.bwlimit_kbps,
        "capacity_bytes": site.capacity_bytes,
        "options": site.options,
    }
    with get_engine(url).begin() as conn:
        before = conn.execute(sa.select(sites).where(sites.c.name == site.name)).first()
        stmt = insert(sites).values(**values, created_at=sa.func.now())
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["name"], set_={k: v for k, v in values.items() if k != "name"}
            )
        )
    if before is None:
        return None
    return {k: v for k, v in before._mapping.items() if k != "created_at"}
