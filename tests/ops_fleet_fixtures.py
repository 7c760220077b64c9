"""More of the ops test fleet (``tests/ops_fixtures.py``) for rolling updates and recovery:
a version that crashes on chosen hosts, a simulated power cut, and a wake command that boots a
host (starts its collector) after an optional delay.

``update`` goes through ``fleet-update``, which marks the unit broken when the version is listed
in the host's ``bad_versions`` file (the new version crashes there) and then calls ``svc update``.
``wake`` runs on the worker's machine (``where: local``, as IPMI would): it waits the seconds in
the host's ``wake_delay`` file, if any, then starts the host's ``collector`` unit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tests.ops_fixtures import Fleet, write_commands

UPDATE = r'''#!PYTHON
"""fleet-update HOST UNIT VERSION: svc update, with the unit broken for a bad version."""
import json, os, sys
from pathlib import Path

host, unit, version = sys.argv[1:4]
home = Path(__file__).resolve().parent / "state" / host
bad = home / "bad_versions"
conf = home / "units" / f"{unit}.json"
data = json.loads(conf.read_text())
data["broken"] = bad.exists() and version in bad.read_text().split()
conf.write_text(json.dumps(data))
svc = str(Path(__file__).resolve().parent / "svc")
os.execv(svc, [svc, "update", host, unit, version])
'''

WAKE = r'''#!PYTHON
"""wake HOST: power the host on (start its collector), after its wake_delay if any."""
import os, subprocess, sys, time
from pathlib import Path

host = sys.argv[1]
root = Path(__file__).resolve().parent
delay = root / "state" / host / "wake_delay"
if delay.exists():
    time.sleep(float(delay.read_text()))
with open(root / "state" / host / "calls", "a") as log:
    log.write("wake via local\n")
sys.exit(subprocess.run([str(root / "svc"), "start", host, "collector"]).returncode)
'''


def _script(path: Path, body: str) -> Path:
    path.write_text(body.replace("PYTHON", sys.executable, 1))
    path.chmod(0o755)
    return path


def install(fleet: Fleet) -> None:
    """Point ``update`` and ``wake`` of the fleet's command templates at the scripts above."""
    update = _script(fleet.root / "fleet-update", UPDATE)
    wake = _script(fleet.root / "wake", WAKE)
    write_commands(fleet.commands, fleet.svc, update=f"{update} {{host}} {{unit}} {{version}}")
    verbs = yaml.safe_load(fleet.commands.read_text())
    verbs["wake"] = {"command": f"{wake} {{host}}", "where": "local"}
    fleet.commands.write_text(yaml.safe_dump(verbs))


def bad_version(fleet: Fleet, host: str, version: str) -> None:
    """``version`` crashes on ``host`` (its process exits at once)."""
    (fleet.state(host) / "bad_versions").write_text(version + "\n")


def version(fleet: Fleet, host: str, unit: str) -> str:
    path = fleet.state(host) / f"{unit}.version"
    return path.read_text().strip() if path.exists() else "1"


def wake_delay(fleet: Fleet, host: str, seconds: float) -> None:
    (fleet.state(host) / "wake_delay").write_text(str(seconds))


def power_cut(fleet: Fleet, hosts: list[str]) -> None:
    """Every unit of ``hosts`` stopped (collector included), as after a power cut."""
    for host in hosts:
        for unit in fleet.host(host).units:
            fleet.svc_call(host, "stop", unit)


def worker_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``portal ops worker`` as a child process (so the test can kill -9 it)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "portal", "ops", "worker", "--threads", "2"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
