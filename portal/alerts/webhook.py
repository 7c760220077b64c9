"""``POST /api/alerts``: Alertmanager's (and Grafana's) webhook; one ``alert`` event per alert.

All alerts of a notification are validated before any is stored (a bad one rejects the whole
body with 400), and stored in one transaction with the notification's audit entry
(``alert.received``), so a retried notification is never half-kept.
A database that does not answer gives 503, which makes Alertmanager retry: nothing is lost.
A body that can never be stored (too large, nested too deeply, a NUL in a label, a time that is
not a time) gives 4xx: Alertmanager does not retry those.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from flask import Blueprint, Response, jsonify, request

from portal import routes
from portal.alerts.payload import TOPIC, BadPayload, parse
from portal.apidoc import describe
from portal.auth import audit
from portal.auth.roles import requires
from portal.db.engine import connect_raw
from portal.errors import DatabaseUnavailable, PortalError
from portal.events import bus as events

blueprint = Blueprint("alerts", __name__)

_TEXT_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
#: Alertmanager's webhook body (version 4; Grafana's contact point sends the same as version 1).
NOTIFICATION = {
    "type": "object",
    "required": ["version", "alerts"],
    "properties": {
        "version": {"type": "string", "enum": ["4", "1"]},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "receiver": {"type": "string"},
        "groupKey": {"type": "string"},
        "alerts": {
            "type": "array",
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["status", "labels", "startsAt", "fingerprint"],
                "properties": {
                    "status": {"type": "string", "enum": ["firing", "resolved"]},
                    "labels": {**_TEXT_MAP, "required": ["alertname"]},
                    "annotations": _TEXT_MAP,
                    "startsAt": {"type": "string", "format": "date-time"},
                    "endsAt": {"type": "string"},
                    "generatorURL": {"type": "string"},
                    "fingerprint": {"type": "string", "minLength": 1},
                },
            },
        },
    },
}
RECORDED = {
    "type": "object",
    "required": ["recorded", "ids"],
    "properties": {
        "recorded": {"type": "integer", "minimum": 0},
        "ids": {"type": "array", "items": {"type": "integer"}},
    },
}


@blueprint.post("/api/alerts")
@requires("operator")  # Alertmanager sends its token (portal stack up writes it)
@describe(body=NOTIFICATION, responses={200: RECORDED}, tags=["alerts"])
def receive() -> Response:
    """Record every alert of one Alertmanager notification."""
    try:
        body = _json_body()
        source, alerts = parse(body)
    except BadPayload as exc:
        return routes.error_response(400, str(exc))
    url = routes.settings().database_url
    names = ",".join(dict.fromkeys(a["alertname"] for a in alerts))
    entry = audit.Entry(
        "alert.received", names, params={"alerts": len(alerts), "status": _status(body)}
    )
    try:
        with connect_raw(url) as conn, conn.transaction():
            ids = [events.publish(url, TOPIC, a, source=source, conn=conn) for a in alerts]
            audit.record(url, routes.identity(), entry, conn=conn)  # kept or lost with the events
    except (DatabaseUnavailable, psycopg.OperationalError) as exc:  # an outage: worth a retry
        return routes.error_response(503, f"alerts not recorded, retry later: {exc}")
    except (psycopg.DataError, psycopg.IntegrityError, UnicodeError) as exc:  # never storable
        return routes.error_response(400, f"alerts not recorded: the database refused them: {exc}")
    except (PortalError, psycopg.Error) as exc:
        return routes.error_response(503, f"alerts not recorded, retry later: {exc}")
    return jsonify({"recorded": len(ids), "ids": ids})


def _json_body() -> Any:
    """The body as JSON (413 beyond ``PORTAL_MAX_REQUEST_BYTES``) or ``BadPayload``."""
    raw = request.get_data()
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadPayload("request body is JSON nested too deeply") from None
    except ValueError:
        raise BadPayload(
            "request body is not JSON (expected an Alertmanager webhook payload)"
        ) from None


def _status(body: dict[str, Any]) -> str:
    status = body.get("status")
    return status if status in ("firing", "resolved") else ""
