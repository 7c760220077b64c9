"""The one client of Alertmanager's API: the active silences, and which one mutes an alert."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from portal.errors import BackendUnavailable

TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.is_regex:
            try:
                hit = re.fullmatch(self.value, got) is not None  # Alertmanager anchors regexes
            except re.error:
                hit = False
        else:
            hit = got == self.value
        return hit == self.is_equal


@dataclass(frozen=True)
class Silence:
    """An active silence: who set it, until when, why."""

    id: str
    created_by: str
    comment: str
    ends_at: str
    matchers: tuple[Matcher, ...]

    def mutes(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def _silence(raw: dict[str, Any]) -> Silence:
    return Silence(
        id=str(raw.get("id", "")),
        created_by=str(raw.get("createdBy", "")),
        comment=str(raw.get("comment", "")),
        ends_at=str(raw.get("endsAt", "")),
        matchers=tuple(
            Matcher(
                str(m.get("name", "")),
                str(m.get("value", "")),
                bool(m.get("isRegex", False)),
                bool(m.get("isEqual", True)),
            )
            for m in raw.get("matchers") or []
        ),
    )


def silences(url: str, timeout: float = TIMEOUT_S) -> list[Silence]:
    """The active silences of the Alertmanager at ``url``; ``BackendUnavailable`` otherwise."""
    try:
        resp = httpx.get(f"{url}/api/v2/silences", timeout=timeout)
        resp.raise_for_status()
        data = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise BackendUnavailable(f"Alertmanager at {url} does not answer ({exc})") from None
    if not isinstance(data, list):
        raise BackendUnavailable(f"Alertmanager at {url} sent no list of silences")
    return [
        _silence(s)
        for s in data
        if isinstance(s, dict) and (s.get("status") or {}).get("state") == "active"
    ]


def silencing(labels: Mapping[str, str], found: Iterable[Silence]) -> Silence | None:
    """The active silence that mutes an alert with ``labels`` (the one ending last), if any."""
    muting = [s for s in found if s.mutes(labels)]
    return max(muting, key=lambda s: s.ends_at) if muting else None


def describe(labels: Mapping[str, str], firing: bool, found: list[Silence] | None) -> str:
    """Who silenced a firing alert until when, for people; ``found`` None: Alertmanager did
    not answer."""
    from portal.alerts.query import when

    if not firing:
        return "–"
    if found is None:
        return "unknown (Alertmanager unavailable)"
    silence = silencing(labels, found)
    if silence is None:
        return "no"
    why = f" ({silence.comment})" if silence.comment else ""
    return f"by {silence.created_by or '?'} until {when(silence.ends_at)}{why}"


# -- creating and expiring silences (the operations capability's maintenance windows) ----------
def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def create_silence(
    url: str,
    matchers: Iterable[Matcher],
    ends_at: datetime,
    created_by: str,
    comment: str,
    starts_at: datetime | None = None,
    timeout: float = TIMEOUT_S,
) -> str:
    """Create a silence; returns its id. ``BackendUnavailable`` when Alertmanager refuses."""
    body = {
        "matchers": [
            {"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}
            for m in matchers
        ],
        "startsAt": _iso(starts_at or datetime.now(UTC)),
        "endsAt": _iso(ends_at),
        "createdBy": created_by,
        "comment": comment,
    }
    try:
        resp = httpx.post(f"{url}/api/v2/silences", json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"Alertmanager at {url} does not answer ({exc})") from None
    if resp.status_code != 200:
        why = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else resp.status_code
        raise BackendUnavailable(f"Alertmanager at {url} refused the silence ({why})")
    try:
        return str(resp.json()["silenceID"])
    except (ValueError, KeyError, TypeError):
        raise BackendUnavailable(f"Alertmanager at {url} sent no silence id") from None


def expire_silence(url: str, silence_id: str, timeout: float = TIMEOUT_S) -> bool:
    """Expire a silence now; False when Alertmanager does not know it (or it already ended)."""
    try:
        resp = httpx.delete(f"{url}/api/v2/silence/{silence_id}", timeout=timeout)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"Alertmanager at {url} does not answer ({exc})") from None
    if resp.status_code == 200:
        return True
    if resp.status_code == 404 or "expired" in resp.text.lower():
        return False
    raise BackendUnavailable(f"Alertmanager at {url} refused to expire {silence_id}")


def silence_state(url: str, silence_id: str, timeout: float = TIMEOUT_S) -> str | None:
    """``active``, ``pending`` or ``expired``; None when Alertmanager does not know the id."""
    try:
        resp = httpx.get(f"{url}/api/v2/silence/{silence_id}", timeout=timeout)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"Alertmanager at {url} does not answer ({exc})") from None
    if resp.status_code == 404:
        return None
    try:
        resp.raise_for_status()
        return str((resp.json().get("status") or {}).get("state") or "") or None
    except (httpx.HTTPError, ValueError, AttributeError):
        raise BackendUnavailable(f"Alertmanager at {url} sent no silence {silence_id}") from None


def list_silences(url: str, timeout: float = TIMEOUT_S) -> list[Silence]:
    """The active silences (the same as ``silences``; named for symmetry with create/expire)."""
    return silences(url, timeout)


def post_alert(
    url: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    ends_at: datetime,
    timeout: float = TIMEOUT_S,
) -> None:
    """Send one alert straight to Alertmanager (for notices that no Prometheus rule sees, such
    as a maintenance window ending); it resolves by itself at ``ends_at``."""
    body = [
        {
            "labels": dict(labels),
            "annotations": dict(annotations),
            "startsAt": _iso(min(datetime.now(UTC), ends_at)),  # never after its end
            "endsAt": _iso(ends_at),
        }
    ]
    try:
        resp = httpx.post(f"{url}/api/v2/alerts", json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"Alertmanager at {url} does not answer ({exc})") from None
    if resp.status_code != 200:
        raise BackendUnavailable(f"Alertmanager at {url} refused the alert ({resp.status_code})")
