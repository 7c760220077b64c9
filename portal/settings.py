"""The only place obsportal reads configuration: ``PORTAL_*`` environment variables.

Each core setting is declared once, as a field of ``Settings`` (default, parser, help); plugins
declare theirs through the ``register_settings`` hook. The README's settings table is generated
from the same declarations, so documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
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


def _optional_path(name: str, raw: str) -> Path | None:
    return Path(raw).expanduser().absolute() if raw else None


def _paths(name: str, raw: str) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser().absolute() for p in raw.split(os.pathsep) if p)


def _networks(name: str, raw: str) -> tuple[str, ...]:
    """Addresses or CIDR networks, validated; kept as text (``ipaddress`` parses on use)."""
    import ipaddress

    out = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise SettingsError(name, f"{part!r} is not an address or network") from None
        out.append(part)
    return tuple(out)


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(name, f"{raw!r} is not one of {', '.join(choices)}")
        return raw

    return parse


def _host_names(name: str, raw: str) -> tuple[str, ...]:
    """``Host`` header values: ``name``, ``name:port``, ``[::1]:port`` or ``*``."""
    out = tuple(p.strip().lower() for p in raw.split(",") if p.strip())
    for host in out:
        if host != "*" and not re.fullmatch(r"(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(:\d{1,5})?", host):
            raise SettingsError(name, f"{host!r} is not a host name, host:port or *")
    return out


def _text(name: str, raw: str) -> str:
    return raw


def _optional_bind(name: str, raw: str) -> str:
    return _bind(name, raw) if raw else ""


def _flag(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"{raw!r} is not true or false")


def _emails(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated mail addresses (``name@domain``), empty allowed."""
    out = tuple(p.strip() for p in raw.split(",") if p.strip())
    for addr in out:
        if not re.fullmatch(r"[^@\s,<>]+@[^@\s,<>]+", addr):
            raise SettingsError(name, f"{addr!r} is not a mail address (name@domain)")
    return out


def _words(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated label values (severities)."""
    out = tuple(p.strip() for p in raw.split(",") if p.strip())
    for word in out:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", word):
            raise SettingsError(name, f"{word!r} is not a plain word (letters, digits, _ . -)")
    return out


def _duration(name: str, raw: str) -> str:
    """A Prometheus/Alertmanager duration such as ``30s``, ``5m``, ``4h``, ``1d12h``."""
    if not raw or not re.fullmatch(r"((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?", raw):
        raise SettingsError(name, f"{raw!r} is not a duration like 30s, 5m, 4h or 1d")
    if not any(c.isdigit() and c != "0" for c in raw):
        raise SettingsError(name, f"{raw!r} must be longer than 0")
    return raw


def _default_host() -> str:
    return socket.gethostname().split(".")[0]


@dataclass(frozen=True)
class Setting:
    """One ``PORTAL_*`` variable: default (raw text), parser and the help shown in tables."""

    env: str
    default: str | Callable[[], str]
    parse: Callable[[str, str], Any]
    help: str

    @property
    def field(self) -> str:
        return self.env.removeprefix(PREFIX).lower()

    def value(self, env: Mapping[str, str]) -> Any:
        raw = env.get(self.env)
        if raw is None:
            raw = self.default() if callable(self.default) else self.default
        return self.parse(self.env, raw.strip())


def _setting(default: str | Callable[[], str], parse: Callable[[str, str], Any], help: str) -> Any:
    """Declare a core setting where its field is: the field name gives ``PORTAL_<NAME>``."""
    return field(metadata={"default": default, "parse": parse, "help": help})


@dataclass(frozen=True)
class Settings:
    """Validated configuration, each core setting declared once here; build it with ``load()``."""

    database_url: str = _setting(
        "postgresql://postgres@127.0.0.1:5432/obsportal",
        _url(("postgresql", "postgres", "postgresql+psycopg")),
        "PostgreSQL/TimescaleDB holding metadata, metrics, logs and events. When it is "
        "unreachable, `portal stack up` starts a private server on the URL's port.",
    )
    database_read_url: str = _setting(
        "",
        _url(("postgresql", "postgres", "postgresql+psycopg"), optional=True),
        "A streaming read replica of `PORTAL_DATABASE_URL`: pages, quicklooks and API reads at "
        "viewer level query it; writes, logins and the CLI stay on the primary. Empty: none.",
    )
    data_dir: Path = _setting(
        "./var",
        _path,
        "Where the local stack keeps generated configs, data, pid files, logs and spools.",
    )
    prometheus_url: str = _setting(
        "http://127.0.0.1:9090",
        _url(("http", "https")),
        "Prometheus; `portal stack up` starts one on this port when none answers.",
    )
    prometheus_remote_write_url: str = _setting(
        "",
        _url(("http", "https"), optional=True),
        "Long-term, multi-Prometheus store the local stack's Prometheus also sends every sample "
        "to (`remote_write`), e.g. VictoriaMetrics' `http://HOST:8428/api/v1/write`; empty: "
        "none. Point `PORTAL_PROMETHEUS_URL` at its query API to read from it.",
    )
    pushgateway_url: str = _setting(
        "http://127.0.0.1:9091", _url(("http", "https")), "Pushgateway for batch jobs."
    )
    alertmanager_url: str = _setting(
        "http://127.0.0.1:9093",
        _url(("http", "https")),
        "Alertmanager; it routes alerts to the portal's `/api/alerts` webhook.",
    )
    notify_smtp: str = _setting(
        "",
        _optional_bind,
        "Mail server (`HOST:PORT`) Alertmanager sends alert mails through; empty: no mail.",
    )
    notify_email_from: str = _setting(
        "", _text, "Sender address of alert mails (needed with `PORTAL_NOTIFY_SMTP`)."
    )
    notify_email_to: tuple[str, ...] = _setting(
        "", _emails, "Comma-separated recipients of alert mails (needed with `PORTAL_NOTIFY_SMTP`)."
    )
    notify_smtp_user: str = _setting("", _text, "User name for SMTP authentication; empty: none.")
    notify_smtp_password_file: Path | None = _setting(
        "",
        _optional_path,
        "File holding the SMTP password (Alertmanager reads it; needed with "
        "`PORTAL_NOTIFY_SMTP_USER`).",
    )
    notify_smtp_tls: bool = _setting(
        "true", _flag, "Require STARTTLS with the mail server (`false` for a local relay)."
    )
    notify_email_severities: tuple[str, ...] = _setting(
        "critical,page", _words, "Alert severities (the `severity` label) that are mailed."
    )
    notify_webhook_url: str = _setting(
        "",
        _url(("http", "https"), optional=True),
        "Slack- or Mattermost-compatible incoming-webhook URL alerts are posted to (JSON); "
        "empty: none.",
    )
    notify_webhook_severities: tuple[str, ...] = _setting(
        "critical,page,warning",
        _words,
        "Alert severities posted to `PORTAL_NOTIFY_WEBHOOK_URL`.",
    )
    notify_group_wait: str = _setting(
        "30s", _duration, "How long Alertmanager gathers alerts of a group before telling people."
    )
    notify_group_interval: str = _setting(
        "5m", _duration, "Wait before telling people about new alerts in an already told group."
    )
    notify_repeat_interval: str = _setting(
        "4h", _duration, "Repeat a notification to people while its alerts keep firing."
    )
    runbook_base_url: str = _setting(
        "",
        _url(("http", "https"), optional=True),
        "Where the runbooks are published (an alert's runbook link is this URL plus "
        "`#<anchor>`); empty: the portal's own `/runbooks` page.",
    )
    loki_url: str = _setting(
        "",
        _url(("http", "https"), optional=True),
        "Loki push/query API; empty disables Loki (logs stay in PostgreSQL only).",
    )
    grafana_url: str = _setting(
        "",
        _url(("http", "https"), optional=True),
        "Grafana, for links from portal tiles to dashboards; empty: no links. Links show only "
        "while it answers (`/api/health`, checked at most once a minute).",
    )
    web_bind: str = _setting("127.0.0.1:8050", _bind, "Address the portal's gunicorn listens on.")
    web_workers: int = _setting("2", _int(1, 64), "gunicorn worker processes for the portal.")
    allowed_hosts: tuple[str, ...] = _setting(
        "",
        _host_names,
        "Comma-separated `Host` header values the portal answers (`name` or `name:port`, `*` for "
        "any); any other gets 400 (DNS rebinding). Empty: the host of `PORTAL_WEB_BIND`, "
        "`localhost` and `127.0.0.1`.",
    )
    query_timeout_seconds: float = _setting(
        "10",
        _float(0.1, 3600),
        "Longest one database query of a web page, quicklook or API request may run; "
        "PostgreSQL cancels it after that (the CLI has no limit).",
    )
    max_request_bytes: int = _setting(
        "8388608",
        _int(1024, 2**31),
        "Largest request body the portal reads (alert notifications, page callbacks); a larger "
        "one is refused with 413.",
    )
    collector_port: int = _setting(
        "9105", _int(1, 65535), "Port the host collector serves `/metrics` on."
    )
    host_name: str = _setting(
        _default_host, _text, "This host's name in the inventory, metrics and logs."
    )
    quicklooks_path: tuple[Path, ...] = _setting(
        "",
        _paths,
        "Extra quicklook plugin folders, separated by `:` (the built-in quicklooks are always "
        "loaded).",
    )
    plugins_dir: Path | None = _setting(
        "",
        _optional_path,
        "A folder of one-file portal plugins (each `*.py` implements hooks of "
        "`portal.hookspecs`); empty: only installed plugins.",
    )
    metrics_retention_days: int = _setting(
        "90",
        _int(1, 36500),
        "Days of metric samples kept in PostgreSQL (whole partitions dropped).",
    )
    logs_retention_days: int = _setting("30", _int(1, 36500), "Days of log lines kept.")
    audit_retention_days: int = _setting(
        "3650",
        _int(1, 36500),
        "Days of audit log entries kept (whole daily partitions dropped; never trimmed by DELETE).",
    )
    events_retention_days: int = _setting(
        "90",
        _int(1, 36500),
        "Days of events kept: older daily partitions are dropped whole by partition "
        "maintenance (`portal db maintain`, and daily in `portal run`).",
    )
    log_sources: str = _setting(
        "",
        _text,
        "Files `portal collect logs` ships: comma-separated "
        "`GLOB[=component][;record=host+component][;start=REGEX]` (component defaults to the "
        "file name; `record` takes those columns from each record's own fields; `start` matches "
        "the first line of a multi-line record); empty ships the local stack's "
        "`<data_dir>/log/*.log` and `<data_dir>/log/*/*.log`.",
    )
    pointings_retention_days: int = _setting(
        "400", _int(1, 36500), "Days of pointings and beam events kept."
    )
    partition_premake_days: int = _setting(
        "7", _int(1, 365), "Daily partitions created ahead of time."
    )
    write_batch_rows: int = _setting(
        "5000", _int(1, 10_000_000), "Rows per COPY batch on the write path."
    )
    write_flush_seconds: float = _setting(
        "1.0", _float(0.01, 3600), "Longest a row waits before a flush."
    )
    write_queue_rows: int = _setting(
        "200000",
        _int(100, 100_000_000),
        "In-memory queue bound; beyond it rows go to the on-disk spool.",
    )
    log_level: str = _setting(
        "INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "Level of the portal's own logs."
    )
    anonymous: str = _setting(
        "none",
        _choice("none", "viewer"),
        "What a visitor who has not logged in may do: `none` (log in first) or `viewer` (read "
        "everything). `make run` sets `viewer` for the local demo.",
    )
    trusted_proxies: tuple[str, ...] = _setting(
        "",
        _networks,
        "Comma-separated addresses or networks of reverse proxies whose `X-Forwarded-User` "
        "(site single sign-on) and `X-Forwarded-For`/`-Proto` headers are believed.",
    )
    secret_key: str = _setting(
        "",
        _text,
        "Key signing session cookies; empty: one generated into `<data_dir>/secret_key` "
        "(mode 0600) on first use.",
    )
    session_idle_minutes: int = _setting(
        "60", _int(1, 100_000), "A session ends after this many minutes without a request."
    )
    session_max_hours: int = _setting(
        "12", _int(1, 10_000), "A session ends this many hours after login, active or not."
    )
    #: Settings declared by plugins (``register_settings``), by variable name.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checks across settings (each field is checked alone by its parser)."""
        if self.notify_smtp and not self.notify_email_from:
            raise SettingsError("PORTAL_NOTIFY_EMAIL_FROM", "needed when PORTAL_NOTIFY_SMTP is set")
        if self.notify_smtp and not self.notify_email_to:
            raise SettingsError("PORTAL_NOTIFY_EMAIL_TO", "needed when PORTAL_NOTIFY_SMTP is set")
        if self.notify_smtp_user and self.notify_smtp_password_file is None:
            raise SettingsError(
                "PORTAL_NOTIFY_SMTP_PASSWORD_FILE", "needed when PORTAL_NOTIFY_SMTP_USER is set"
            )

    @property
    def web_port(self) -> int:
        return int(self.web_bind.rpartition(":")[2])

    @property
    def web_url(self) -> str:
        host = self.web_bind.rpartition(":")[0]
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.web_port}"

    @property
    def host_allow_list(self) -> tuple[str, ...]:
        """``PORTAL_ALLOWED_HOSTS``, or the bind host, ``localhost`` and ``127.0.0.1``."""
        if self.allowed_hosts:
            return self.allowed_hosts
        bound = self.web_bind.rpartition(":")[0].strip("[]").lower()
        names = {"localhost", "127.0.0.1", "[::1]"}
        if bound and bound not in ("0.0.0.0", "::"):
            names.add(f"[{bound}]" if ":" in bound else bound)
        return tuple(sorted(names))

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


#: The core settings, derived from the fields above (the README table lists these).
SPECS: tuple[Setting, ...] = tuple(
    Setting(PREFIX + f.name.upper(), f.metadata["default"], f.metadata["parse"], f.metadata["help"])
    for f in fields(Settings)
    if "parse" in f.metadata
)


def plugin_specs(plugins_dir: Path | None) -> tuple[Setting, ...]:
    """Settings the loaded plugins declare; a bad declaration is a plugin error, not a crash."""
    from portal import plugins

    declared: list[Setting] = []
    core = {s.env for s in SPECS}
    for spec in plugins.manager(plugins_dir).results("register_settings"):
        if not isinstance(spec, Setting) or not spec.env.startswith(PREFIX) or spec.env in core:
            raise SettingsError(
                getattr(spec, "env", repr(spec)),
                "a plugin declares this setting twice or without the PORTAL_ prefix",
            )
        declared.append(spec)
    return tuple(declared)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every ``PORTAL_*`` variable; ``SettingsError`` on the first bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {spec.field: spec.value(env) for spec in SPECS}
    extra_specs = plugin_specs(values["plugins_dir"])
    known = {spec.env for spec in (*SPECS, *extra_specs)}
    for key in env:
        if key.startswith(PREFIX) and key not in known:
            raise SettingsError(key, "unknown setting (see `portal settings table`)")
    extra = {spec.env: spec.value(env) for spec in extra_specs}
    return Settings(**values, extra=extra)


@lru_cache(maxsize=1)
def get() -> Settings:
    """The process-wide settings, validated once (request code reads its app's copy instead)."""
    return load()


def all_specs(cfg: Settings | None = None) -> tuple[Setting, ...]:
    """Core settings, then those of the loaded plugins."""
    return (*SPECS, *plugin_specs(cfg.plugins_dir if cfg else None))


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


def markdown_table(specs: tuple[Setting, ...] = SPECS) -> str:
    """The settings table (the README's lists the core settings)."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for spec in specs:
        default = "this host's short name" if callable(spec.default) else spec.default
        lines.append(f"| `{spec.env}` | `{default}` | {spec.help} |")
    return "\n".join(lines)
