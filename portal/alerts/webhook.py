"""``POST /api/alerts``: Alertmanager's (and Grafana's) webhook; one ``alert`` event per alert.

All alerts of a notification are validated before any is stored (a bad one rejects the whole
body with 400), and stored in one transaction with the notification's audit entry
(``alert.received``), so a retried notification is never half-kept.
A database that does not answer gives 503, which makes Alertmanager retry: nothing is lost.
"""

from __future__ import annotations

from typing import Any

import psycopg
from flask import Blueprint, Response, jsonify, request

from portal import routes
from portal.alerts.payload import TOPIC, BadPayload, parse
from portal.auth import audit
from portal.auth.roles import requires
from portal.db.engine import connect_raw
from portal.errors import PortalError
from portal.events import bus as events

blueprint = Blueprint("alerts", __name__)


@blueprint.post("/api/alerts")
@requires("operator")  # Alertmanager sends its token (portal stack up writes it)
def receive() -> Response:
    """Record every alert of one Alertmanager notification."""
    body: Any = request.get_json(silent=True)
    if body is None:
        return routes.error_response(
            400, "request body is not JSON (expected an Alertmanager webhook payload)"
        )
    try:
        source, alerts = parse(body)
    except BadPayload as exc:
        return routes.error_response(400, str(exc))
    url = routes.settings().database_url
    names = ",".join(dict.fromkeys(a["alertname"] for a in alerts))
    entry = audit.Entry(
        "alert.received", names, params={"alerts": len(alerts), "status": body.get("status", "")}
    )
    try:
        with connect_raw(url) as conn, conn.transaction():
            ids = [events.publish(url, TOPIC, a, source=source, conn=conn) for a in alerts]
            audit.record(url, routes.identity(), entry, conn=conn)  # kept or lost with the events
    except (PortalError, psycopg.Error) as exc:
        return routes.error_response(503, f"alerts not recorded, retry later: {exc}")
    return jsonify({"recorded": len(ids), "ids": ids})
