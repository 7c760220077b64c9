"""``portal stack up | status | down``: the local services as plain child processes.

State lives in ``<data>/stack/state.json``: for each service, whether this stack started it
(``managed``), its pid and URL. ``down`` stops only managed services; a service that already
answered at its URL is recorded as ``external`` and left alone.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from portal.db import engine as db_engine
from portal.errors import PortalError
from portal.readiness import http_ready
from portal.redact import redact_url
from portal.settings import Settings, check_port_free
from portal.stack import configs, postgres, process

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Service:
    name: str
    setting: str  # the PORTAL_* variable holding its URL
    binaries: tuple[str, ...]  # Debian name first, upstream name second
    package: str

    def url(self, cfg: Settings) -> str:
        return str(getattr(cfg, self.setting.removeprefix("PORTAL_").lower()))


POSTGRES = Service("postgresql", "PORTAL_DATABASE_URL", ("pg_ctl",), "postgresql")
PROMETHEUS = Service("prometheus", "PORTAL_PROMETHEUS_URL", ("prometheus",), "prometheus")
PUSHGATEWAY = Service(
    "pushgateway",
    "PORTAL_PUSHGATEWAY_URL",
    ("prometheus-pushgateway", "pushgateway"),
    "prometheus-pushgateway",
)
ALERTMANAGER = Service(
    "alertmanager",
    "PORTAL_ALERTMANAGER_URL",
    ("prometheus-alertmanager", "alertmanager"),
    "prometheus-alertmanager",
)
SERVICES = (POSTGRES, PROMETHEUS, PUSHGATEWAY, ALERTMANAGER)


@dataclass
class ServiceStatus:
    name: str
    state: str  # healthy | unhealthy | crashed | stopped | external
    url: str
    pid: int | None = None
    managed: bool = False
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("healthy", "external")


# -- state file -------------------------------------------------------------------------------
def _state_path(cfg: Settings) -> Path:
    return cfg.data_dir / "stack" / "state.json"


def load_state(cfg: Settings) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(_state_path(cfg).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _save_state(cfg: Settings, state: dict[str, dict[str, Any]]) -> None:
    path = _state_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def log_path(cfg: Settings, name: str) -> Path:
    return cfg.data_dir / "log" / f"{name}.log"


def _log(cfg: Settings, name: str, entry: dict[str, Any] | None) -> Path:
    """The service's log: where it was started (PostgreSQL's may live outside the data dir)."""
    return Path(entry["log"]) if entry and entry.get("log") else log_path(cfg, name)


# -- health -----------------------------------------------------------------------------------
def healthy(service: Service, url: str) -> bool:
    if service is POSTGRES:
        return db_engine.server_reachable(url, timeout=2)
    return http_ready(url, timeout=2.0)


def find_binary(service: Service) -> str:
    for name in service.binaries:
        found = shutil.which(name)
        if found:
            return found
    raise PortalError(
        f"{service.name}: binary {service.binaries[0]!r} not found; install the "
        f"Debian package {service.package} (apt-get install -y {service.package})"
    )


def _command(service: Service, cfg: Settings, binary: str) -> list[str]:
    listen = configs.hostport(service.url(cfg))
    data = cfg.data_dir / service.name
    data.mkdir(parents=True, exist_ok=True)
    if service is PROMETHEUS:
        configs.refresh(cfg)
        conf = configs.prometheus_path(cfg)
        return [
            binary,
            f"--config.file={conf}",
            f"--storage.tsdb.path={data / 'tsdb'}",
            f"--web.listen-address={listen}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=15d",
        ]
    if service is PUSHGATEWAY:
        return [binary, f"--web.listen-address={listen}"]
    if service is ALERTMANAGER:
        configs.refresh(cfg)
        conf = configs.alertmanager_path(cfg)
        return [
            binary,
            f"--config.file={conf}",
            f"--storage.path={data / 'data'}",
            f"--web.listen-address={listen}",
            "--cluster.listen-address=",
        ]
    raise AssertionError(service.name)


# -- operations -------------------------------------------------------------------------------
def _inspect(service: Service, cfg: Settings, entry: dict[str, Any] | None) -> ServiceStatus:
    url = service.url(cfg)
    if entry and entry.get("managed"):
        pid = _pid(service, entry) or entry.get("pid")
        expect = None if service is POSTGRES else Path(entry.get("binary", "")).name
        if not process.alive(pid, expect):
            return ServiceStatus(
                service.name,
                "crashed",
                url,
                pid,
                True,
                f"not running; last log lines: {process.tail(_log(cfg, service.name, entry), 3)}",
            )
        state = "healthy" if healthy(service, url) else "unhealthy"
        return ServiceStatus(service.name, state, url, pid, True)
    if healthy(service, url):
        return ServiceStatus(service.name, "external", url, detail="not started by this stack")
    return ServiceStatus(service.name, "stopped", url)


def status(cfg: Settings) -> list[ServiceStatus]:
    state = load_state(cfg)
    return [_inspect(s, cfg, state.get(s.name)) for s in SERVICES]


def _start(service: Service, cfg: Settings) -> dict[str, Any]:
    url = service.url(cfg)
    logp = log_path(cfg, service.name)
    if service is POSTGRES:
        data, logp = postgres.placement(cfg.data_dir / "postgresql", logp)
        pid = postgres.start(url, data, logp)
        return {
            "managed": True,
            "pid": pid,
            "data": str(data),
            "log": str(logp),
            "binary": "postgres",
        }
    parts = urlsplit(url)
    if parts.hostname not in postgres.LOCAL_HOSTS:
        raise PortalError(
            f"{service.setting}: {redact_url(url)} does not answer, and a local "
            f"{service.name} can only be started on 127.0.0.1"
        )
    binary = find_binary(service)
    check_port_free(service.setting, parts.hostname or "127.0.0.1", parts.port or 80)
    cmd = _command(service, cfg, binary)
    pid = process.spawn(cmd, logp, cwd=cfg.data_dir)
    return {"managed": True, "pid": pid, "binary": binary, "cmd": cmd}


def _pid(service: Service, entry: dict[str, Any]) -> int | None:
    if service is POSTGRES:
        return postgres.pid_of(Path(entry["data"]))
    return entry.get("pid")


def _ensure(
    service: Service, cfg: Settings, state: dict[str, dict[str, Any]], say: Callable[[str], None]
) -> None:
    """Bring one service to healthy: keep it, adopt an external one, or start it."""
    url = service.url(cfg)
    current = _inspect(service, cfg, state.get(service.name))
    if current.state == "unhealthy":  # ours and running, maybe still starting
        process.wait_until(lambda: healthy(service, url), START_TIMEOUT, interval=0.1)
        current = _inspect(service, cfg, state.get(service.name))
    if current.state in ("healthy", "external"):
        if current.state == "external":
            state[service.name] = {"managed": False}
        elif service in (PROMETHEUS, ALERTMANAGER) and configs.refresh(cfg)[service.name]:
            reload(service, cfg)
            say(f"{service.name}: configuration changed; reloaded")
        say(f"{service.name}: already {current.state}")
        return
    if current.state == "crashed":
        say(f"{service.name}: was crashed ({current.detail}); restarting")
    entry = state[service.name] = _start(service, cfg)
    _save_state(cfg, state)
    say(f"{service.name}: starting on {redact_url(url)}")

    def settled() -> bool:
        return healthy(service, url) or not process.alive(_pid(service, entry))

    process.wait_until(settled, START_TIMEOUT, interval=0.1)
    if not healthy(service, url):
        log = _log(cfg, service.name, entry)
        raise PortalError(
            f"{service.name} did not become healthy at {redact_url(url)}; "
            f"log {log}: {process.tail(log, 3)}"
        )


def up(cfg: Settings, on_progress: Callable[[str], None] = lambda _: None) -> list[ServiceStatus]:
    """Start what is not running (idempotent); raises ``PortalError`` naming what failed."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    state = load_state(cfg)
    for service in SERVICES:
        _ensure(service, cfg, state, on_progress)
        if service is POSTGRES:
            db_engine.ensure_database(cfg.database_url)
        _save_state(cfg, state)
    _grafana_provisioning(cfg, on_progress)
    return [_inspect(s, cfg, state.get(s.name)) for s in SERVICES]


def grafana_dir(cfg: Settings) -> Path:
    return cfg.data_dir / "grafana-provisioning"


def _grafana_provisioning(cfg: Settings, say: Callable[[str], None]) -> None:
    """A provisioning folder for a Grafana over this stack (the datasource's timescaledb flag
    is this database's); a plugin's broken dashboard is reported, not fatal."""
    from portal.grafana import provisioning

    try:
        _count, changed, flag = provisioning.export(cfg, grafana_dir(cfg))
    except PortalError as exc:
        say(f"grafana: provisioning not written: {exc}")
        return
    if changed:
        say(f"grafana: provisioning in {grafana_dir(cfg)} (timescaledb={str(flag).lower()})")


@dataclass(frozen=True)
class Crash:
    """A managed service whose process is gone: how it ended and its log's last line."""

    name: str
    pid: int | None
    how: str  # exit code 1 | exit by SIGKILL | exit status unknown (not this process's child)
    last: str


def crashed(cfg: Settings) -> list[Crash]:
    """Services this stack started whose process is gone (a liveness check only, no HTTP)."""
    out = []
    state = load_state(cfg)
    for service in SERVICES:
        entry = state.get(service.name)
        if not entry or not entry.get("managed"):
            continue
        pid = _pid(service, entry) or entry.get("pid")
        expect = None if service is POSTGRES else Path(entry.get("binary", "")).name
        if process.alive(pid, expect):
            continue
        how = process.describe_exit(process.exit_code(entry.get("pid")))
        last = process.tail(_log(cfg, service.name, entry), 1)
        out.append(Crash(service.name, pid, how, last))
    return out


def restart(cfg: Settings, name: str, on_progress: Callable[[str], None] = lambda _: None) -> None:
    """Start one crashed service again, as ``up`` would; ``PortalError`` when it fails."""
    service = next(s for s in SERVICES if s.name == name)
    state = load_state(cfg)
    _ensure(service, cfg, state, on_progress)
    if service is POSTGRES:
        db_engine.ensure_database(cfg.database_url)
    _save_state(cfg, state)


def down(cfg: Settings, on_progress: Callable[[str], None] = lambda _: None) -> None:
    """Stop what this stack started, in reverse order; forget external services."""
    state = load_state(cfg)
    for service in reversed(SERVICES):
        entry = state.get(service.name)
        if not entry or not entry.get("managed"):
            state.pop(service.name, None)
            continue
        if service is POSTGRES:
            db_engine.dispose_all()
            postgres.stop(Path(entry["data"]))
        else:
            process.stop(entry["pid"], Path(entry.get("binary", "")).name)
        on_progress(f"{service.name}: stopped")
        state.pop(service.name)
        _save_state(cfg, state)
    _save_state(cfg, state)


def reload(service: Service, cfg: Settings) -> bool:
    """Ask Prometheus or Alertmanager to re-read config and rules (``POST /-/reload``)."""
    try:
        return httpx.post(f"{service.url(cfg)}/-/reload", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def reload_prometheus(cfg: Settings) -> bool:
    return reload(PROMETHEUS, cfg)


def describe(statuses: list[ServiceStatus]) -> str:
    rows = [("SERVICE", "STATE", "PID", "URL", "DETAIL")]
    for s in statuses:
        rows.append((s.name, s.state, str(s.pid or "-"), redact_url(s.url), s.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(r[i].ljust(widths[i]) for i in range(4)) + ("  " + r[4] if r[4] else "")
        for r in rows
    )


def as_json(statuses: list[ServiceStatus]) -> str:
    return json.dumps([{**asdict(s), "url": redact_url(s.url)} for s in statuses], indent=2)


def wait_ready(cfg: Settings, timeout: float = 30.0) -> bool:
    """Poll until every service is healthy (for scripts that follow ``up``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(s.ok for s in status(cfg)):
            return True
        time.sleep(0.2)
    return False
