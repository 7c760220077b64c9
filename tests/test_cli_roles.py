"""Commands declare the role they need, and the CLI enforces it for the OS user running it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from portal.auth.roles import declared
from portal.cli import cli
from portal.lazy import LazyCommand

#: Commands that change state somewhere (database, files, processes) and the role each needs.
CHANGES_STATE = {
    "portal db upgrade": "admin",
    "portal db downgrade": "admin",
    "portal stack up": "operator",
    "portal events publish": "operator",
    "portal hosts add": "operator",
    "portal hosts remove": "operator",
    "portal collect host": "operator",
    "portal demo seed": "operator",
    "portal demo fault host-down": "operator",
    "portal demo fault component-crash": "operator",
    "portal demo fault packet-loss": "operator",
    "portal demo fault disk-filling": "operator",
    "portal demo fault transfer-stall": "operator",
    "portal demo fault clock-skew": "operator",
    "portal demo fault clear": "operator",
    "portal demo incident": "operator",
    "portal quicklook new": "scientist",
    "portal users add": "admin",
    "portal users disable": "admin",
    "portal tokens create": "admin",
    "portal tokens revoke": "admin",
    "portal run": "admin",
    "portal ops maintenance on": "operator",
    "portal ops maintenance off": "operator",
    "portal ops drain": "operator",
    "portal ops undrain": "operator",
    "portal ops restart": "operator",
    "portal ops reboot": "operator",
    "portal ops update": "operator",
    "portal ops rollback": "operator",
    "portal ops recover": "operator",
    "portal ops cancel": "operator",
    "portal ops worker": "operator",
    "portal sched enqueue": "operator",
    "portal sched cancel": "operator",
    "portal sched drain": "operator",
    "portal sched resume": "operator",
    "portal sched declare": "operator",
    "portal sched run": "operator",
    "portal sched demo-backlog": "operator",
    "portal sched slurm run": "admin",
    "portal data register": "scientist",
    "portal data scan": "scientist",
    "portal data delete": "operator",
    "portal data veto": "operator",
    "portal data retry": "operator",
    "portal data verify": "operator",
    "portal data evaluate": "operator",
    "portal data worker": "operator",
    "portal data demo": "operator",
    "portal data site add": "operator",
    "portal data rule add": "operator",
    "portal data rule suspend": "operator",
    "portal data rule resume": "operator",
}


def _walk(cmd: click.Command, path: str) -> dict[str, click.Command]:
    real = cmd.real() if isinstance(cmd, LazyCommand) else cmd
    found = {path: real}
    if isinstance(real, click.Group):
        ctx = click.Context(real, info_name=path)
        for name in real.list_commands(ctx):
            sub = real.get_command(ctx, name)
            assert sub is not None
            found |= _walk(sub, f"{path} {name}")
    return found


def test_state_changing_commands_declare_their_role_where_the_cli_enforces_it() -> None:
    commands = _walk(cli, "portal")
    for path, cmd in commands.items():
        inner = declared(cmd.callback)
        # a role on the function only (decorator below @command) would never be checked
        assert inner is None or getattr(cmd, "portal_role", None) == inner, path
    for path, role in CHANGES_STATE.items():
        assert getattr(commands[path], "portal_role", None) == role, path


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_a_user_without_a_role_is_refused_in_one_line(
    tmp_path: Path, portal_env: dict[str, str]
) -> None:
    """As ``nobody`` (no portal user of that name, not the data dir owner): viewer."""
    env = {
        **os.environ,
        **portal_env,
        "PORTAL_DATA_DIR": str(tmp_path / "var"),
        "HOME": str(tmp_path),
    }
    tmp_path.chmod(0o755)

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            timeout=120,
        )

    if as_nobody(sys.executable, "-c", "import portal").returncode != 0:
        # a checkout in a private (0700) directory: nobody cannot start this interpreter;
        # tests/test_access.py checks the same refusal in-process
        pytest.skip("user nobody cannot run this checkout's interpreter")
    result = as_nobody(sys.executable, "-m", "portal", "users", "list")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().startswith(
        "error: `portal users list` needs role admin; nobody@"
    ), result.stderr
    assert "Traceback" not in result.stderr
    readable = as_nobody(sys.executable, "-m", "portal", "settings", "show")
    assert readable.returncode == 0, readable.stderr
