"""The only place obsportal reads configuration: ``PORTAL_*`` environment variables.

Each setting is declared once in ``SPECS`` (name, default, parser, help); the README's settings
table is generated from the same list, so documentation cannot drift from the code.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from portal.errors import SettingsError

PREFIX = "PORTAL_"


def _url(schemes: tuple[str, ...], optional: bool = False) -> Callable[[str, str], str]:
    """A parser for URLs with one of ``schemes`` and an explicit host."""

    def parse(name: str, raw: str) -> str:
        if optional and raw == "":
            return ""
        try:
            parts = urlsplit(raw)
            port = parts.port  # raises ValueError on a bad port
        except ValueError as exc:
            raise SettingsError(name, f"malformed URL {raw!r} ({exc})") from None
        if parts.scheme not in schemes:
            want = " or ".join(f"{s}://" for s in schemes)
            raise SettingsError(name, f"malformed URL {raw!r}: must start with {want}")
        if not parts.hostname and "host=" not in parts.query:
            raise SettingsError(name, f"malformed URL {raw!r}: no host")
        if port == 0:
            raise SettingsError(name, f"malformed URL {raw!r}: port 0")
        return raw.rstrip("/")

    return parse


def _int(lo: int, hi: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(name, f"{raw!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise SettingsError(name, f"{value} is out of range ({lo} to {hi})")
        return value

    return parse


def _float(lo: float, hi: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(name, f"{raw!r} is not a number") from None
        if not lo <= value <= hi:
            raise SettingsError(name, f"{value} is out of range ({lo} to {hi})")
        return value

    return parse


def _bind(name: str, raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host:
        raise SettingsError(name, f"{raw!r} is not HOST:PORT")
    _int(1, 65535)(name, port)
    return raw


def _path(name: str, raw: str) -> Path:
    if not raw:
        raise SettingsError(name, "must not be empty")
    return Path(raw).expanduser().absolute()


def _paths(name: str, raw: str) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser().absolute() for p in raw.split(os.pathsep) if p)


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(name, f"{raw!r} is not one of {', '.join(choices)}")
        return raw

    return parse


def _text(name: str, raw: str) -> str:
    return raw


def _default_host() -> str:
    return socket.gethostname().split(".")[0]


@dataclass(frozen=True)
class Spec:
    field: str
    default: str | Callable[[], str]
    parse: Callable[[str, str], Any]
    help: str

    @property
    def env(self) -> str:
        return PREFIX + self.field.upper()


SPECS: tuple[Spec, ...] = (
    Spec(
        "database_url",
        "postgresql://postgres@127.0.0.1:5432/obsportal",
        _url(("postgresql", "postgres", "postgresql+psycopg")),
        "PostgreSQL/TimescaleDB holding metadata, metrics, logs and events. When it is "
        "unreachable, `portal stack up` starts a private server on the URL's port.",
    ),
    Spec(
        "data_dir",
        "./var",
        _path,
        "Where the local stack keeps generated configs, data, pid files, logs and spools.",
    ),
    Spec(
        "prometheus_url",
        "http://127.0.0.1:9090",
        _url(("http", "https")),
        "Prometheus; `portal stack up` starts one on this port when none answers.",
    ),
    Spec(
        "pushgateway_url",
        "http://127.0.0.1:9091",
        _url(("http", "https")),
        "Pushgateway for batch jobs.",
    ),
    Spec(
        "alertmanager_url",
        "http://127.0.0.1:9093",
        _url(("http", "https")),
        "Alertmanager; it routes alerts to the portal's `/api/alerts` webhook.",
    ),
    Spec(
        "loki_url",
        "",
        _url(("http", "https"), optional=True),
        "Loki push/query API; empty disables Loki (logs stay in PostgreSQL only).",
    ),
    Spec(
        "grafana_url",
        "http://127.0.0.1:3000",
        _url(("http", "https")),
        "Grafana, for links from portal tiles to dashboards.",
    ),
    Spec("web_bind", "127.0.0.1:8050", _bind, "Address the portal's gunicorn listens on."),
    Spec("web_workers", "2", _int(1, 64), "gunicorn worker processes for the portal."),
    Spec("collector_port", "9105", _int(1, 65535), "Port the host collector serves `/metrics` on."),
    Spec("host_name", _default_host, _text, "This host's name in the inventory, metrics and logs."),
    Spec(
        "quicklooks_path",
        "",
        _paths,
        "Extra quicklook plugin folders, separated by `:` (the repo's `quicklooks/` is always "
        "loaded).",
    ),
    Spec(
        "metrics_retention_days",
        "90",
        _int(1, 36500),
        "Days of metric samples kept in PostgreSQL (whole partitions dropped).",
    ),
    Spec("logs_retention_days", "30", _int(1, 36500), "Days of log lines kept."),
    Spec(
        "log_sources",
        "",
        _text,
        "Files `portal collect logs` ships: comma-separated `GLOB[=component]` (component "
        "defaults to the file name); empty ships the local stack's `<data_dir>/log/*.log` and "
        "`<data_dir>/log/*/*.log`.",
    ),
    Spec(
        "pointings_retention_days", "400", _int(1, 36500), "Days of pointings and beam events kept."
    ),
    Spec("partition_premake_days", "7", _int(1, 365), "Daily partitions created ahead of time."),
    Spec("write_batch_rows", "5000", _int(1, 10_000_000), "Rows per COPY batch on the write path."),
    Spec("write_flush_seconds", "1.0", _float(0.01, 3600), "Longest a row waits before a flush."),
    Spec(
        "write_queue_rows",
        "200000",
        _int(100, 100_000_000),
        "In-memory queue bound; beyond it rows go to the on-disk spool.",
    ),
    Spec(
        "log_level",
        "INFO",
        _choice("DEBUG", "INFO", "WARNING", "ERROR"),
        "Level of the portal's own logs.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Validated configuration; build it with ``load()``."""

    database_url: str
    data_dir: Path
    prometheus_url: str
    pushgateway_url: str
    alertmanager_url: str
    loki_url: str
    grafana_url: str
    web_bind: str
    web_workers: int
    collector_port: int
    host_name: str
    quicklooks_path: tuple[Path, ...]
    metrics_retention_days: int
    logs_retention_days: int
    log_sources: str
    pointings_retention_days: int
    partition_premake_days: int
    write_batch_rows: int
    write_flush_seconds: float
    write_queue_rows: int
    log_level: str

    @property
    def web_port(self) -> int:
        return int(self.web_bind.rpartition(":")[2])

    @property
    def web_url(self) -> str:
        host = self.web_bind.rpartition(":")[0]
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.web_port}"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every ``PORTAL_*`` variable; ``SettingsError`` on the first bad one."""
    env = os.environ if environ is None else environ
    known = {spec.env for spec in SPECS}
    for key in env:
        if key.startswith(PREFIX) and key not in known:
            raise SettingsError(key, "unknown setting (see the settings table in README.md)")
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw = env.get(spec.env)
        if raw is None:
            raw = spec.default() if callable(spec.default) else spec.default
        values[spec.field] = spec.parse(spec.env, raw.strip())
    return Settings(**values)


@lru_cache(maxsize=1)
def get() -> Settings:
    """The process-wide settings, validated once."""
    return load()


def check_port_free(setting: str, host: str, port: int) -> None:
    """Fail with a clear message when something else already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SettingsError(
                setting, f"port {port} on {host} is in use ({exc.strerror})"
            ) from None


def markdown_table() -> str:
    """The README's settings table."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for spec in SPECS:
        default = "this host's short name" if callable(spec.default) else spec.default
        lines.append(f"| `{spec.env}` | `{default}` | {spec.help} |")
    return "\n".join(lines)
