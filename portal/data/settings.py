"""The data capability's settings (``register_settings``); values in ``settings.extra``."""

from __future__ import annotations

import re
from typing import Any

from portal.errors import PortalError, SettingsError
from portal.settings import Setting, Settings
from portal.timeparse import parse_duration

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]?B?)", re.I)


def parse_size(text: str) -> float:
    """``45TB`` -> 4.5e13 bytes (decimal units, as disks are sold)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise PortalError(f"{text!r} is not a size like 45TB or 1.1PB")
    return float(m[1]) * UNITS[m[2].upper() if m[2].upper().endswith("B") else m[2].upper() + "B"]


def _seconds(name: str, raw: str) -> float:
    try:
        return parse_duration(raw, "").total_seconds()
    except PortalError as exc:
        raise SettingsError(name, str(exc)) from None


def _site(name: str, raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", raw):
        raise SettingsError(name, f"{raw!r} is not a site name (letters, digits, _ . -)")
    return raw


def _count(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise SettingsError(name, f"{raw!r} is not a whole number from 1 to 1000")
    return int(raw)


def _fraction(name: str, raw: str) -> float:
    text = raw.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise SettingsError(name, f"{raw!r} is not a fraction like 25% or 0.25") from None
    if not 0 <= value <= 100:
        raise SettingsError(name, f"{raw!r} must be between 0% and 10000%")
    return value


def parse_policies(name: str, raw: str) -> dict[tuple[str, str], float]:
    """``short@local=30d,standard@st01=1y`` -> ``{(class, site): seconds}``."""
    out: dict[tuple[str, str], float] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        m = re.fullmatch(r"([\w.-]+)@([\w.-]+)=(.+)", part)
        if not m:
            raise SettingsError(name, f"{part!r} is not CLASS@SITE=DURATION (short@local=30d)")
        try:
            out[(m[1], m[2])] = parse_duration(m[3], "").total_seconds()
        except PortalError as exc:
            raise SettingsError(name, f"{part!r}: {exc}") from None
    return out


def parse_budgets(name: str, raw: str) -> dict[str, tuple[float, bool]]:
    """``l1=45TB/d,hhat_monthly=1.1PB`` -> ``{kind: (bytes, per_day)}``."""
    out: dict[str, tuple[float, bool]] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        kind, sep, amount = part.partition("=")
        per_day = amount.strip().lower().endswith("/d")
        try:
            if not sep or not kind.strip():
                raise PortalError(f"{part!r} is not KIND=SIZE or KIND=SIZE/d")
            out[kind.strip()] = (parse_size(amount.strip()[: -2 if per_day else None]), per_day)
        except PortalError as exc:
            raise SettingsError(name, str(exc)) from None
    return out


SETTINGS = (
    Setting(
        "PORTAL_DATA_SITE",
        "local",
        _site,
        "Site name of the copies this machine's pipeline produces (their origin site).",
    ),
    Setting(
        "PORTAL_DATA_BUDGETS",
        "l1=45TB/d,rfi=3.7TB/d,hhat_daily=1.1PB,hhat_monthly=1.1PB,hhat_cumulative=1.1PB",
        parse_budgets,
        "Storage budget per product kind: `KIND=SIZE/d` a daily ingest rate, `KIND=SIZE` a total "
        "(the seed's volumes by default).",
    ),
    Setting(
        "PORTAL_DATA_BUDGET_TOLERANCE",
        "25%",
        _fraction,
        "IngestOverBudget fires when a kind's daily ingest exceeds its budget by more than this.",
    ),
    Setting(
        "PORTAL_DATA_RETENTION",
        "",
        parse_policies,
        "Retention policies `CLASS@SITE=DURATION` (e.g. `short@local=30d`): older copies that "
        "may go are announced for deletion. Empty: nothing is deleted automatically.",
    ),
    Setting(
        "PORTAL_DATA_RATE_WINDOW",
        "1d",
        _seconds,
        "Window over which the current ingest rate (and so days until full) is measured.",
    ),
    Setting(
        "PORTAL_DATA_STUCK_AFTER",
        "24h",
        _seconds,
        "A replication rule is STUCK when its completion has not moved for this long.",
    ),
    Setting(
        "PORTAL_DATA_VETO_WINDOW",
        "24h",
        _seconds,
        "How long an announced deletion waits, during which an operator may veto it.",
    ),
    Setting(
        "PORTAL_DATA_EVALUATE_INTERVAL",
        "30s",
        _seconds,
        "How often the rule evaluator re-checks rules, STUCK clocks and due deletions.",
    ),
    Setting(
        "PORTAL_DATA_TRANSFER_LEASE",
        "60s",
        _seconds,
        "A transfer a worker took is taken again by another when not renewed for this long.",
    ),
    Setting(
        "PORTAL_DATA_TRANSFER_ATTEMPTS",
        "5",
        _count,
        "Attempts per file before its transfer request is FAILED (retried by back-off before).",
    ),
    Setting(
        "PORTAL_DATA_RETRY_BACKOFF",
        "30s",
        _seconds,
        "First retry delay of a failed transfer; doubled each attempt, at most 1 hour.",
    ),
)


def value(cfg: Settings, env: str) -> Any:
    """A data setting's parsed value (its default when the plugin's settings were not loaded)."""
    if env in cfg.extra:
        return cfg.extra[env]
    spec = next(s for s in SETTINGS if s.env == env)
    return spec.value({})
