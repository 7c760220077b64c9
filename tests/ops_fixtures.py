"""A fleet of real "hosts" for the operations tests: one sshd each on 127.0.0.1 (own port, own
host key, one shared client key), in the inventory with ``labels.ssh_port``, and a tiny service
manager (``svc``) the site command templates point at, which really starts and stops processes.

``svc`` keeps each host's state under ``<fleet>/state/<host>/``: ``units/<unit>.json`` (port the
unit's process serves ``/metrics`` on, ``broken``: the process exits at once, ``fail``: the
verbs ``restart``/``update`` exit 1), ``<unit>.pid``, ``<unit>.version``, ``boots``, and a
``calls`` log (one line per verb, with the sshd port from ``SSH_CONNECTION``: proof the call
went through that host's sshd). ``collector`` is a unit like the others, serving the host's
collector port, so a simulated reboot (``svc reboot``: every unit stopped, then started) takes
the collector down and up. Monitoring (``start_monitoring``): a real Prometheus scraping the
inventory's file_sd targets every second, evaluating rules, sending to a real Alertmanager.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from portal.settings import Settings
from portal.stack import process
from tests import sshd as sshd_server
from tests.conftest import free_port

SVC = r'''#!PYTHON
"""svc VERB HOST [UNIT [VERSION]]: a small service manager for the ops tests."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

BASE = Path(__file__).resolve().parent / "state"
verb, host, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
home = BASE / host
home.mkdir(parents=True, exist_ok=True)
port = (os.environ.get("SSH_CONNECTION") or "- - - local").split()[3]
with open(home / "calls", "a") as log:
    log.write(" ".join([verb, *rest, "via", port]) + "\n")


def conf(unit):
    return json.loads((home / "units" / f"{unit}.json").read_text())


def pid_of(unit):
    try:
        pid = int((home / f"{unit}.pid").read_text())
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return None if state in ("Z", "X") else pid
    except (OSError, ValueError, IndexError):
        return None


def start(unit):
    if pid_of(unit):
        return 0
    c = conf(unit)
    vfile = home / f"{unit}.version"
    version = vfile.read_text().strip() if vfile.exists() else "1"
    argv = [sys.executable, str(BASE.parent / "component.py"), str(c["port"]), version]
    if c.get("broken"):
        argv = [sys.executable, "-c", "raise SystemExit(1)"]
    with open(home / f"{unit}.log", "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    (home / f"{unit}.pid").write_text(str(proc.pid))
    return 0


def stop(unit):
    pid = pid_of(unit)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if pid_of(unit) is None:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
    return 0


def units():
    return sorted(p.stem for p in (home / "units").glob("*.json"))


def main():
    unit = rest[0] if rest else ""
    if verb in ("restart", "update") and conf(unit).get("fail"):
        print(f"{verb} {unit}: failing on purpose", file=sys.stderr)
        return 1
    if verb == "start":
        return start(unit)
    if verb == "stop":
        return stop(unit)
    if verb == "restart":
        stop(unit)
        return start(unit)
    if verb == "status":
        running = pid_of(unit) is not None
        print("active" if running else "inactive")
        return 0 if running else 3
    if verb == "version":
        path = home / f"{unit}.version"
        print(path.read_text().strip() if path.exists() else "1")
        return 0
    if verb == "update":
        stop(unit)
        (home / f"{unit}.version").write_text(rest[1] + "\n")
        return start(unit)
    if verb == "reboot":
        boots = int((home / "boots").read_text()) if (home / "boots").exists() else 0
        (home / "boots").write_text(str(boots + 1))
        for u in units():
            stop(u)
        for u in units():
            start(u)
        return 0
    print(f"svc: unknown verb {verb}", file=sys.stderr)
    return 2


sys.exit(main())
'''

COMPONENT = r'''#!PYTHON
"""component.py PORT VERSION: a process serving /metrics until SIGTERM."""
import signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, version = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f'obs_component_version_info{{version="{version}"}} 1\n'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server.serve_forever()
'''


@dataclass
class FleetHost:
    name: str
    sshd: sshd_server.Sshd
    collector_port: int
    units: dict[str, int] = field(default_factory=dict)  # unit -> metrics port

    @property
    def port(self) -> int:
        return self.sshd.port


@dataclass
class Fleet:
    """The hosts, the files a client needs, and the settings pointing the ops worker at them."""

    root: Path
    hosts: list[FleetHost]
    key: Path
    known_hosts: Path
    commands: Path
    svc: Path

    @property
    def env(self) -> dict[str, str]:
        """``PORTAL_OPS_*`` settings for this fleet (add them to a worker's environment)."""
        return {
            "PORTAL_OPS_SSH_KEY": str(self.key),
            "PORTAL_OPS_KNOWN_HOSTS": str(self.known_hosts),
            "PORTAL_OPS_COMMANDS": str(self.commands),
            "PORTAL_OPS_CONNECT_TIMEOUT": "5",
            "PORTAL_OPS_COMMAND_TIMEOUT": "30",
            "PORTAL_OPS_GATE_SECONDS": "30",
        }

    def settings(self, base: Settings, **more: str) -> Settings:
        """``base`` with this fleet's ops settings (parsed as the plugin declares them)."""
        from portal import settings as portal_settings

        specs = {s.env: s for s in portal_settings.all_specs(base)}
        extra = dict(base.extra)
        for name, raw in {**self.env, **more}.items():
            extra[name] = specs[name].parse(name, raw)
        return base.replace(extra=extra)

    def host(self, name: str) -> FleetHost:
        return next(h for h in self.hosts if h.name == name)

    def state(self, host: str) -> Path:
        return self.root / "state" / host

    def calls(self, host: str) -> list[str]:
        path = self.state(host) / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def unit_pid(self, host: str, unit: str) -> int | None:
        path = self.state(host) / f"{unit}.pid"
        try:
            pid = int(path.read_text())
        except (OSError, ValueError):
            return None
        return pid if process.alive(pid) else None

    def add_unit(
        self, host: str, unit: str, port: int | None = None, start: bool = True, **flags: Any
    ) -> int:
        """Declare ``unit`` on ``host`` (its metrics port; ``broken``/``fail`` flags); start it."""
        port = port or free_port()
        units = self.state(host) / "units"
        units.mkdir(parents=True, exist_ok=True)
        (units / f"{unit}.json").write_text(json.dumps({"port": port, **flags}))
        self.host(host).units[unit] = port
        if start:
            self.svc_call(host, "start", unit)
        return port

    def set_flags(self, host: str, unit: str, **flags: Any) -> None:
        path = self.state(host) / "units" / f"{unit}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **flags}))

    def svc_call(self, host: str, *args: str) -> None:
        """Run ``svc`` locally (setup, not through SSH)."""
        import subprocess

        subprocess.run([str(self.svc), args[0], host, *args[1:]], check=True, timeout=30)

    def stop(self) -> None:
        """Stop every unit process and every sshd, by PID."""
        for h in self.hosts:
            for pidfile in self.state(h.name).glob("*.pid"):
                try:
                    pid = int(pidfile.read_text())
                except (OSError, ValueError):
                    continue
                if process.alive(pid):
                    process.stop(pid, timeout=5)
            process.stop(h.sshd.pid, timeout=10)


def write_commands(path: Path, svc: Path, **overrides: str) -> Path:
    """Site command templates pointing at ``svc`` (the test's service manager)."""
    verbs = {
        "restart": f"{svc} restart {{host}} {{unit}}",
        "start": f"{svc} start {{host}} {{unit}}",
        "stop": f"{svc} stop {{host}} {{unit}}",
        "status": f"{svc} status {{host}} {{unit}}",
        "reboot": f"{svc} reboot {{host}}",
        "update": f"{svc} update {{host}} {{unit}} {{version}}",
        "version": f"{svc} version {{host}} {{unit}}",
        **overrides,
    }
    path.write_text(yaml.safe_dump(verbs))
    return path


def start_fleet(
    root: Path,
    names: Sequence[str],
    cfg: Settings | None = None,
    role: str = "compute",
    collector: bool = True,
    trusted: Iterable[str] | None = None,
) -> Fleet:
    """One sshd per name (and, with ``cfg``, each in the inventory with ``labels.ssh_port``);
    ``collector``: a ``collector`` unit serving each host's collector port. ``trusted``: the
    hosts whose keys go into ``known_hosts`` (default all)."""
    if not sshd_server.available():
        import pytest

        pytest.skip("openssh-server is not installed (make system-packages)")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    key = root / "client_ed25519"
    sshd_server._keygen(key)
    svc = root / "svc"
    svc.write_text(SVC.replace("PYTHON", sys.executable, 1))
    svc.chmod(0o755)
    (root / "component.py").write_text(COMPONENT.replace("PYTHON", sys.executable, 1))
    hosts: list[FleetHost] = []
    fleet = Fleet(root, hosts, key, root / "known_hosts", root / "commands.yml", svc)
    try:
        for name in names:
            home = root / "hosts" / name
            home.mkdir(parents=True)
            shutil.copy(key, home / "client_ed25519")
            shutil.copy(key.with_suffix(".pub"), home / "client_ed25519.pub")
            server = sshd_server.start(home, free_port())
            hosts.append(FleetHost(name, server, free_port()))
    except BaseException:
        fleet.stop()
        raise
    keep = set(names if trusted is None else trusted)
    fleet.known_hosts.write_text(
        "".join(h.sshd.known_hosts.read_text() for h in hosts if h.name in keep)
    )
    write_commands(fleet.commands, svc)
    for h in hosts:
        fleet.state(h.name).mkdir(parents=True, exist_ok=True)
        if collector:
            fleet.add_unit(h.name, "collector", h.collector_port)
    if cfg is not None:
        register(fleet, cfg, role)
    return fleet


def register(fleet: Fleet, cfg: Settings, role: str = "compute") -> None:
    """Put the fleet's hosts into the inventory (address 127.0.0.1, ``labels.ssh_port``)."""
    from portal.inventory import registry

    for h in fleet.hosts:
        registry.add_host(
            cfg,
            h.name,
            role=role,
            address="127.0.0.1",
            collector_port=h.collector_port,
            labels={"ssh_port": h.port},
            state="up",
        )


@dataclass
class Monitoring:
    pids: list[int]
    prom_url: str
    am_url: str

    def stop(self) -> None:
        for pid in self.pids:
            process.stop(pid, timeout=15)


def start_monitoring(tmp: Path, targets: Path, rules: list[dict[str, Any]] = ()) -> Monitoring:  # type: ignore[assignment]
    """Prometheus scraping ``targets/*.json`` every second (as the stack's ``collectors`` job),
    evaluating ``rules`` every second and sending to its own Alertmanager."""
    from portal.readiness import http_ready

    tmp.mkdir(parents=True, exist_ok=True)
    prom_port, am_port = free_port(), free_port()
    prom_url, am_url = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}"
    (tmp / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "ops-test", "interval": "1s", "rules": list(rules)}]})
    )
    (tmp / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp / "rules.yml")],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                },
                "scrape_configs": [
                    {
                        "job_name": "collectors",
                        "honor_labels": True,
                        "scrape_timeout": "900ms",
                        "file_sd_configs": [
                            {"files": [str(targets / "*.json")], "refresh_interval": "1s"}
                        ],
                    }
                ],
            }
        )
    )
    (tmp / "alertmanager.yml").write_text(
        textwrap.dedent(
            """\
            route: {receiver: "null", group_wait: 1s, group_interval: 1s, repeat_interval: 1h}
            receivers: [{name: "null"}]
            """
        )
    )
    pids = [
        process.spawn(
            [
                shutil.which("prometheus-alertmanager") or "alertmanager",
                f"--config.file={tmp / 'alertmanager.yml'}",
                f"--storage.path={tmp / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            tmp / "alertmanager.log",
        ),
        process.spawn(
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--rules.alert.resend-delay=1s",
            ],
            tmp / "prometheus.log",
        ),
    ]
    mon = Monitoring(pids, prom_url, am_url)
    if not process.wait_until(lambda: http_ready(am_url) and http_ready(prom_url), 30):
        mon.stop()
        raise AssertionError(
            process.tail(tmp / "prometheus.log") + process.tail(tmp / "alertmanager.log")
        )
    return mon
