"""``POST /api/alerts``: Alertmanager's (and Grafana's) webhook; one ``alert`` event per alert.

All alerts of a notification are validated before any is stored (a bad one rejects the whole
body with 400), and stored in one transaction, so a retried notification is never half-kept.
A database that does not answer gives 503, which makes Alertmanager retry: nothing is lost.
"""

from __future__ import annotations

from typing import Any

import psycopg
from flask import Blueprint, Response, jsonify, request

from portal import events, settings
from portal.alerts.payload import TOPIC, BadPayload, parse
from portal.db.engine import connect_raw
from portal.errors import PortalError

blueprint = Blueprint("alerts", __name__)


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), status


@blueprint.post("/api/alerts")
def receive() -> tuple[Response, int]:
    """Record every alert of one Alertmanager notification."""
    body: Any = request.get_json(silent=True)
    if body is None:
        return _error(400, "request body is not JSON (expected an Alertmanager webhook payload)")
    try:
        source, alerts = parse(body)
    except BadPayload as exc:
        return _error(400, str(exc))
    url = settings.get().database_url
    try:
        with connect_raw(url) as conn, conn.transaction():
            ids = [events.publish(url, TOPIC, a, source=source, conn=conn) for a in alerts]
    except (PortalError, psycopg.Error) as exc:
        return _error(503, f"alerts not recorded, retry later: {exc}")
    return jsonify({"recorded": len(ids), "ids": ids}), 200
