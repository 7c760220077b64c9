"""What every capability's HTTP routes share: the JSON error body, the serving app's settings
and the identity behind the request.

Lives outside ``portal.web`` so capabilities (logs, alerts, ...) can build blueprints without
importing the web app; the app factory puts its settings where ``settings()`` finds them.
"""

from __future__ import annotations

from http import HTTPStatus

import flask

from portal.auth.identity import ANONYMOUS, Identity
from portal.settings import Settings

CONFIG_KEY = "PORTAL_SETTINGS"


def error_response(status: int, message: str) -> flask.Response:
    """The JSON error body; only the message's first line is sent (no tracebacks, ever)."""
    lines = str(message).strip().splitlines()
    resp = flask.jsonify({"error": lines[0] if lines else HTTPStatus(status).phrase.lower()})
    resp.status_code = status
    return resp


def settings() -> Settings:
    """The settings of the app serving this request (``create_app(cfg)``), never globals."""
    cfg: Settings = flask.current_app.config[CONFIG_KEY]
    return cfg


def identity() -> Identity:
    """Who sent this request (set by the access-control check before every route runs)."""
    who: Identity = flask.g.get("portal_identity", ANONYMOUS)
    return who
