"""The one client of Alertmanager's API: the active silences, and which one mutes an alert."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
