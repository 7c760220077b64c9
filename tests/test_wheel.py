"""The package runs from a wheel: built from this tree, installed in a fresh venv outside it.

Migrations, the web app with its built-in quicklooks, the Grafana check and the plugin list all
work from site-packages, with no dev extra and no checkout on the path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from portal.db import engine as db_engine
from portal.readiness import http_ready
from portal.settings import Settings
from portal.stack import process
from tests.conftest import REPO, free_port, shared_tmpdir

SKIP = {".git", ".venv", "build", "var", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def _copy_tree(dest: Path) -> None:
    """The working tree (symlinks kept), without venvs, caches and build output."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIP or n.endswith(".egg-info") or n == "__pycache__"}

    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)


@pytest.fixture(scope="module")
def venv() -> Iterator[Path]:
    """A fresh venv with only the wheel (and its dependencies) installed."""
    tmp = shared_tmpdir("obsportal-wheel-")
    try:
        _copy_tree(tmp / "src")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps"]
            + ["-w", str(tmp / "dist"), str(tmp / "src")],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (wheel,) = (tmp / "dist").glob("obsportal-*.whl")
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=120)
        install = subprocess.run(
            [str(tmp / "venv" / "bin" / "pip"), "install", "-q", str(wheel)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert install.returncode == 0, install.stderr[-3000:]
        shutil.rmtree(tmp / "src")  # nothing may read the tree the wheel came from
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def wheel_env(venv: Path, pg_server: str, stack: Settings) -> Iterator[dict[str, str]]:
    """Environment for the installed ``portal``: its own database and data dir, no checkout."""
    url = f"{pg_server}/obsportal_wheel_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "PYTHON"))}
    env.update(
        PATH=f"{venv / 'venv' / 'bin'}:{env['PATH']}",
        PORTAL_DATABASE_URL=url,
        PORTAL_DATA_DIR=str(venv / "var"),
        PORTAL_PROMETHEUS_URL=stack.prometheus_url,
        PORTAL_PUSHGATEWAY_URL=stack.pushgateway_url,
        PORTAL_ALERTMANAGER_URL=stack.alertmanager_url,
        PORTAL_WEB_BIND=f"127.0.0.1:{free_port()}",
        PORTAL_WEB_WORKERS="1",
        PORTAL_LOG_LEVEL="WARNING",
    )
    yield env
    db_engine.drop_database(url)


def _run(venv: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """A program of the fresh venv (``portal``, ``python``), run outside the checkout."""
    return subprocess.run(
        [str(venv / "venv" / "bin" / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=venv,
    )


def _portal(venv: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _run(venv, env, "portal", *args)


def test_installed_wheel_runs_migrations_web_quicklooks_and_grafana_check(
    venv: Path, wheel_env: dict[str, str]
) -> None:
    where = _run(venv, wheel_env, "python", "-c", "import portal, grafana_foundation_sdk")
    assert "No module named 'grafana_foundation_sdk'" in where.stderr  # no dev extra here
    origin = _run(venv, wheel_env, "python", "-c", "import portal; print(portal.__file__)")
    assert origin.stdout.startswith(str(venv / "venv")), origin

    upgraded = _portal(venv, wheel_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "database at revision" in upgraded.stdout

    listed = _portal(venv, wheel_env, "plugins").stdout
    assert "web" in listed and "error" not in listed, listed

    check = _portal(venv, wheel_env, "grafana", "check", "--dashboard", "overview")
    assert "Traceback" not in check.stderr, check.stderr
    assert "overview / Hosts up [A] promql" in check.stdout, check.stdout + check.stderr
    assert "queries" in check.stdout.splitlines()[-1]

    # a built-in quicklook renders from site-packages (it queries the migrated database)
    render = _run(
        venv,
        wheel_env,
        "python",
        "-c",
        "import dash; from portal import settings; from portal.web.app import create_app\n"
        "create_app(settings.get())\n"
        "page = next(p for p in dash.page_registry.values()\n"
        "            if p['path'] == '/quicklooks/pointing_density')\n"
        "print(page['file']); print(page['layout'](range='24h'))",
    )
    assert render.returncode == 0, render.stderr
    assert render.stdout.startswith(str(venv / "venv")), render.stdout
    assert "pointings" in render.stdout and "Traceback" not in render.stdout

    # access control ships too: the default settings let no one in without a login or token
    created = _portal(venv, wheel_env, "tokens", "create", "wheel-check", "--role", "viewer")
    assert created.returncode == 0, created.stderr
    auth = {"Authorization": f"Bearer {created.stdout.strip()}"}

    log = (venv / "web.log").open("wb")
    web = subprocess.Popen(
        [str(venv / "venv" / "bin" / "portal"), "web"],
        env=wheel_env,
        cwd=venv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = "http://" + wheel_env["PORTAL_WEB_BIND"]
    try:
        assert process.wait_until(lambda: http_ready(base, "/healthz"), timeout=90), (
            venv / "web.log"
        ).read_text()
        anonymous = httpx.get(base + "/", timeout=10)
        assert anonymous.status_code == 302 and anonymous.headers["location"] == "/login?next=/"
        assert "login-form" in httpx.get(base + "/login", timeout=10).text
        assert httpx.get(base + "/", headers=auth, timeout=10).status_code == 200
        listed_pages = httpx.get(base + "/api/pages", headers=auth, timeout=10).json()
        pages = {p["path"]: p for p in listed_pages}
        assert pages["/quicklooks/pointing_density"]["error"] == ""
        assert pages["/quicklooks/pointing_density"]["file"].startswith(str(venv / "venv"))
    finally:
        assert process.stop(web.pid, timeout=20)
        web.wait()
        log.close()
