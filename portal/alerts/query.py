"""Reading recorded alerts back from the events table (for ``portal alerts`` and the Alerts page).

Alerts live in PostgreSQL (one ``alert`` event per notification), so both work while
Prometheus or Alertmanager are down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from portal.alerts.payload import TOPIC
from portal.db.engine import connect_raw, describe_unreachable
from portal.errors import DatabaseUnavailable

STATEMENT_TIMEOUT_MS = 10_000
UNSET_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end yet"


@dataclass(frozen=True)
class Alert:
    """The latest notification recorded for one alert (one fingerprint)."""

    event_id: int
    received: datetime
    status: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    fingerprint: str
    ends_at: str = ""

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or self.alertname

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def host(self) -> str:
        return self.labels.get("host", "")

    @property
    def component(self) -> str:
        return self.labels.get("component", "")

    @property
    def resolved_at(self) -> str:
        """When a resolved alert ended (Alertmanager's ``endsAt``); empty while firing."""
        if self.status != "resolved" or not self.ends_at or self.ends_at == UNSET_TIME:
            return ""
        return self.ends_at


def _alert(row: dict[str, Any]) -> Alert:
    p = row["payload"]
    return Alert(
        event_id=row["id"],
        received=row["time"],
        status=p.get("status", ""),
        alertname=p.get("alertname", ""),
        labels=p.get("labels", {}),
        annotations=p.get("annotations", {}),
        starts_at=p.get("startsAt", ""),
        fingerprint=p.get("fingerprint", ""),
        ends_at=p.get("endsAt") or "",
    )


def latest(
    url: str,
    firing_only: bool = True,
    limit: int = 200,
    *,
    resolved_since: datetime | None = None,
    severity: str = "",
    host: str = "",
    component: str = "",
) -> list[Alert]:
    """Newest state per fingerprint, newest first.

    ``firing_only``: the alerts firing now; else resolved ones too, only those whose resolved
    notification arrived after ``resolved_since`` when it is given. ``severity``, ``host`` and
    ``component`` keep alerts with exactly that label.
    """
    where = ["TRUE"]
    params: list[Any] = [TOPIC]
    for label, value in (("severity", severity), ("host", host), ("component", component)):
        if value:
            where.append("payload->'labels'->>%s = %s")
            params += [label, value]
    if firing_only:
        where.append("payload->>'status' = 'firing'")
    elif resolved_since is not None:
        where.append("(payload->>'status' = 'firing' OR time >= %s)")
        params.append(resolved_since)
    sql = (
        "SELECT * FROM (SELECT DISTINCT ON (payload->>'fingerprint') id, time, payload "
        "FROM events WHERE topic = %s ORDER BY payload->>'fingerprint', id DESC) last "
        f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s"
    )
    params.append(limit)
    try:
        with connect_raw(url) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            cur.execute(sql, params)
            return [_alert(r) for r in cur.fetchall()]
    except psycopg.OperationalError as exc:  # lost mid-query, or the time limit
        raise DatabaseUnavailable(describe_unreachable(url, exc)) from None


def when(stamp: str) -> str:
    """An Alertmanager timestamp as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if not stamp:
        return "–"
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return f"{parsed:%Y-%m-%d %H:%M:%S} UTC"
