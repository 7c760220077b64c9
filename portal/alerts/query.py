"""Reading recorded alerts back from the events table (for ``portal alerts`` and web pages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from portal.alerts.payload import TOPIC
from portal.db.engine import connect_raw


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

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or self.alertname


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
    )


def latest(url: str, firing_only: bool = True, limit: int = 200) -> list[Alert]:
    """Newest state per fingerprint; with ``firing_only`` the alerts that are firing now."""
    sql = (
        "SELECT * FROM (SELECT DISTINCT ON (payload->>'fingerprint') id, time, payload "
        "FROM events WHERE topic = %s ORDER BY payload->>'fingerprint', id DESC) last "
        + ("WHERE payload->>'status' = 'firing' " if firing_only else "")
        + "ORDER BY id DESC LIMIT %s"
    )
    with connect_raw(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, (TOPIC, limit))
        return [_alert(r) for r in cur.fetchall()]
