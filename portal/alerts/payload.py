"""Validation of webhook payloads into one event body per alert.

Alertmanager sends version "4"; Grafana's webhook contact point (grafana-provisioning/alerting)
sends the same alert shape as version "1", so both are accepted.

Kept apart from Flask so the rules of what is accepted are testable and reusable (CLI replay).
"""

from __future__ import annotations

from typing import Any

from portal.errors import PortalError

TOPIC = "alert"
STATUSES = ("firing", "resolved")
VERSIONS = {"4": "alertmanager", "1": "grafana"}


class BadPayload(PortalError):
    """A webhook body that is not an Alertmanager v4 notification; nothing was recorded."""


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BadPayload(f"{where} must be an object of string values")
    return dict(value)


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
    starts = raw.get("startsAt")
    if not isinstance(starts, str) or not starts:
        raise BadPayload(f"{where}.startsAt must be a timestamp string")
    fingerprint = raw.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise BadPayload(f"{where}.fingerprint must be a non-empty string")
    return {
        "status": status,
        "alertname": labels["alertname"],
        "labels": labels,
        "annotations": _str_map(raw.get("annotations", {}), f"{where}.annotations"),
        "startsAt": starts,
        "endsAt": raw.get("endsAt") if isinstance(raw.get("endsAt"), str) else None,
        "fingerprint": fingerprint,
        "generatorURL": raw.get("generatorURL") if isinstance(raw.get("generatorURL"), str) else "",
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
    receiver = body.get("receiver") if isinstance(body.get("receiver"), str) else ""
    return f"{VERSIONS[version]}:{receiver}", [_alert(a, i) for i, a in enumerate(alerts)]
