"""The allow-list of verbs the ops worker may run on a host, and their per-site command templates.

A verb (``restart``, ``reboot``, ``update``, ...) has a command template such as
``sudo systemctl restart {unit}``. The template is split into words first (``shlex``), then
each placeholder is filled with a value that matched its pattern (``PATTERNS``): a value can
never add a word, an option or shell syntax. ``render`` returns an argv list; the SSH client
quotes it (``shlex.join``) for the remote shell, the dry run prints it.

A site overrides or adds verbs with a YAML file (``PORTAL_OPS_COMMANDS``)::

    restart: sudo systemctl restart {unit}
    reboot: {command: sudo systemctl reboot, role: admin}   # only admins' runs may reboot
    update: {command: sudo apt-get install -y obs-{unit}={version}}
    wake: {command: ipmitool -I lanplus -H {bmc} -f /etc/obs/ipmi chassis power on, where: local}

``where: local`` runs the command on the ops worker's machine (a host that is off has no SSH).
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from portal.auth.roles import ROLES
from portal.errors import PortalError

#: Every placeholder a template may use, and the pattern its value must match.
PATTERNS: dict[str, re.Pattern[str]] = {
    "host": re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$"),
    "address": re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$"),
    "unit": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$"),
    "component": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"),
    "version": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~:-]{0,127}$"),
    "image": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$"),
    "mac": re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$"),
    "bmc": re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$"),
}

#: The built-in verbs: what a site without ``PORTAL_OPS_COMMANDS`` runs.
DEFAULTS: dict[str, str] = {
    "restart": "sudo systemctl restart {unit}",
    "start": "sudo systemctl start {unit}",
    "stop": "sudo systemctl stop {unit}",
    "status": "systemctl is-active {unit}",
    "reboot": "sudo systemctl reboot",
    "update": "sudo /usr/local/sbin/obs-update {unit} {version}",
    "version": "sudo /usr/local/sbin/obs-update --current {unit}",
    "alive": "true",  # SSH answers (after a reboot)
    "wake": "wakeonlan {mac}",  # local: run on the ops worker's machine
}
LOCAL_DEFAULTS = frozenset({"wake"})
VERB_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
WHERE = ("host", "local")


@dataclass(frozen=True)
class Verb:
    """One allowed verb: its template, the least role of a run that may use it, where it runs."""

    name: str
    template: str
    role: str = "operator"
    where: str = "host"  # host: over SSH on the target; local: on the ops worker's machine

    @property
    def placeholders(self) -> tuple[str, ...]:
        names = []
        for word in shlex.split(self.template):
            names += [f for _, f, _, _ in string.Formatter().parse(word) if f is not None]
        return tuple(dict.fromkeys(names))


def check_value(name: str, value: object) -> str:
    """``value`` as text when it matches placeholder ``name``'s pattern; one clear line if not."""
    pattern = PATTERNS.get(name)
    if pattern is None:
        raise PortalError(f"{name!r} is not a known command argument")
    text = str(value)
    if not pattern.match(text):
        raise PortalError(f"{name} {text!r} is invalid: it must match {pattern.pattern}")
    return text


def _verb(name: str, raw: object, source: str) -> Verb:
    """A verb from a defaults entry or a YAML entry (a string, or a mapping with ``command``)."""
    if not VERB_RE.match(name):
        raise PortalError(f"{source}: verb {name!r} must be lower-case letters, digits, _ or -")
    if isinstance(raw, str):
        raw = {"command": raw}
    if not isinstance(raw, Mapping) or not isinstance(raw.get("command"), str):
        raise PortalError(f"{source}: verb {name!r} needs a command (a string)")
    unknown = set(raw) - {"command", "role", "where"}
    if unknown:
        raise PortalError(f"{source}: verb {name!r} has unknown keys {', '.join(sorted(unknown))}")
    default_where = "local" if name in LOCAL_DEFAULTS else "host"
    verb = Verb(
        name,
        raw["command"].strip(),
        str(raw.get("role", "operator")),
        str(raw.get("where", default_where)),
    )
    if verb.role not in ROLES:
        raise PortalError(f"{source}: verb {name!r}: role {verb.role!r} is not one of {ROLES}")
    if verb.where not in WHERE:
        raise PortalError(f"{source}: verb {name!r}: where must be host or local")
    try:
        words = shlex.split(verb.template)
        fields = verb.placeholders
    except ValueError as exc:
        raise PortalError(f"{source}: verb {name!r}: bad command ({exc})") from None
    if not words:
        raise PortalError(f"{source}: verb {name!r}: empty command")
    for field_name in fields:
        if field_name not in PATTERNS:
            raise PortalError(
                f"{source}: verb {name!r} uses {{{field_name}}}; known: {', '.join(PATTERNS)}"
            )
    return verb


def load(path: Path | None) -> dict[str, Verb]:
    """The built-in verbs, overridden and extended by the site's YAML file at ``path``."""
    verbs = {name: _verb(name, cmd, "built-in") for name, cmd in DEFAULTS.items()}
    if path is None:
        return verbs
    import yaml

    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PortalError(f"PORTAL_OPS_COMMANDS: cannot read {path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise PortalError(f"PORTAL_OPS_COMMANDS: {path} is not YAML ({exc})") from None
    if data is None:
        return verbs
    if not isinstance(data, Mapping):
        raise PortalError(f"PORTAL_OPS_COMMANDS: {path} must map verbs to commands")
    for name, raw in data.items():
        verbs[str(name)] = _verb(str(name), raw, source)
    return verbs


def site_verbs(extra: Mapping[str, object]) -> dict[str, Verb]:
    """The verbs for the settings' ``PORTAL_OPS_COMMANDS`` (``settings.extra``)."""
    path = extra.get("PORTAL_OPS_COMMANDS")
    return load(path if isinstance(path, Path) else None)


def render(verb: Verb, args: Mapping[str, object]) -> list[str]:
    """The argv of ``verb`` with ``args`` filled in; every value is checked before use."""
    needed = verb.placeholders
    missing = [n for n in needed if n not in args or args[n] in (None, "")]
    if missing:
        raise PortalError(f"command {verb.name!r} needs {', '.join(missing)}")
    values = {n: check_value(n, args[n]) for n in needed}
    return [word.format(**values) for word in shlex.split(verb.template)]


def shown(argv: list[str]) -> str:
    """An argv as the one line the remote shell receives (and the dry run prints)."""
    return shlex.join(argv)
