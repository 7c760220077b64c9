"""Validation of webhook payloads into one event body per alert.

Alertmanager sends version "4"; Grafana's webhook contact point (grafana-provisioning/alerting)
sends the same alert shape as version "1", so both are accepted.

Kept apart from Flask so the rules of what is accepted are testable and reusable (CLI replay).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal.errors import PortalError

TOPIC = "alert"
STATUSES = ("firing", "resolved")
VERSIONS = {"4": "alertmanager", "1": "grafana"}
#: Most alerts one notification may carry (the generated Alertmanager config sends fewer).
MAX_ALERTS = 1000


class BadPayload(PortalError):
    """A webhook body that is not an Alertmanager v4 notification; nothing was recorded."""


def _storable(text: str, where: str) -> str:
    """``text`` when PostgreSQL can store it: no NUL character, no lone surrogate."""
    if "\x00" in text:
        raise BadPayload(f"{where} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadPayload(f"{where} contains an invalid character (a lone surrogate)") from None
    return text


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BadPayload(f"{where} must be an object of string values")
    for key, text in value.items():
        _storable(key, f"{where} key {key[:40]!r}")
        _storable(text, f"{where}.{key[:40]}")
    return dict(value)


def _time(value: Any, where: str) -> str:
    """An RFC 3339 timestamp as Alertmanager sends it (nanoseconds allowed)."""
    if not isinstance(value, str) or not value:
        raise BadPayload(f"{where} must be a timestamp string")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise BadPayload(f"{where} is not a timestamp: {value[:40]!r}") from None
    return value


def _opt_str(value: Any, where: str) -> str | None:
    return _storable(value, where) if isinstance(value, str) else None


def _alert(raw: Any, index: int) -> dict[str, Any]:
    where = f"alerts[{index}]"
    if not isinstance(raw, dict):
        raise BadPayload(f"{where} must be an object")
    status = raw.get("status")
    if status not in STATUSES:
        raise BadPayload(f"{where}.status must be 'firing' or 'resolved', got {status!r}")
    labels = _str_map(raw.get("labels"), f"{where}.labels")
    if not labels.get("alertname"):
        raise BadPayload(f"{where}.labels has no alertname")
    starts = _time(raw.get("startsAt"), f"{where}.startsAt")
    fingerprint = raw.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise BadPayload(f"{where}.fingerprint must be a non-empty string")
    _storable(fingerprint, f"{where}.fingerprint")
    return {
        "status": status,
        "alertname": labels["alertname"],
        "labels": labels,
        "annotations": _str_map(raw.get("annotations", {}), f"{where}.annotations"),
        "startsAt": starts,
        "endsAt": _opt_str(raw.get("endsAt"), f"{where}.endsAt"),
        "fingerprint": fingerprint,
        "generatorURL": _opt_str(raw.get("generatorURL"), f"{where}.generatorURL") or "",
    }


def parse(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """``(sender:receiver, [event payload, ...])`` or ``BadPayload`` naming the first problem."""
    if not isinstance(body, dict):
        raise BadPayload("body must be a JSON object (an Alertmanager webhook notification)")
    version = body.get("version")
    if version not in VERSIONS:
        raise BadPayload(
            f"unsupported webhook payload version {version!r} (expected '4' from Alertmanager "
            "or '1' from Grafana)"
        )
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise BadPayload("'alerts' must be a list")
    if len(alerts) > MAX_ALERTS:
        raise BadPayload(
            f"{len(alerts)} alerts in one notification; at most {MAX_ALERTS} are accepted "
            "(set max_alerts in the Alertmanager webhook config)"
        )
    receiver = _opt_str(body.get("receiver"), "receiver") or ""
    return f"{VERSIONS[version]}:{receiver}", [_alert(a, i) for i, a in enumerate(alerts)]
