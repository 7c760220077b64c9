"""Every HTTP error on ``/api/*`` gets the one JSON body of ``portal.routes.error_response``."""

from __future__ import annotations

from http import HTTPStatus

import flask
import psycopg
import sqlalchemy.exc
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from portal.db.engine import time_limit
from portal.errors import QueryTimeout
from portal.routes import error_response

API_PREFIX = "/api/"


def _message(exc: HTTPException) -> str:
    req = flask.request
    if exc.code == 404:
        return f"no API route {req.path}"
    if exc.code == 405:
        allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or ()))
        return f"{req.method} is not allowed on {req.path}" + (
            f" (use {allowed})" if allowed else ""
        )
    if exc.code == 413:
        return "request body is too large"
    if exc.code == 500:
        return "internal error; the portal's log has the details"
    return exc.description or HTTPStatus(exc.code or 500).phrase


def _handle(exc: HTTPException) -> HTTPException | flask.Response:
    """JSON on ``/api/*`` (the traceback of a 500 is already in the log); HTML elsewhere."""
    if not flask.request.path.startswith(API_PREFIX):
        return exc
    return error_response(exc.code or 500, _message(exc))


def _api_only() -> None:
    """``/api/*`` is answered by API routes only: Dash's catch-all page route would say 200."""
    req, app = flask.request, flask.current_app
    if not req.path.startswith(API_PREFIX):
        return
    if req.url_rule is not None and req.url_rule.rule.startswith(API_PREFIX):
        return
    api = app.extensions.get("portal_api_rules")
    if api is None:  # routes are fixed once requests are served
        rules = [r for r in app.url_map.iter_rules() if r.rule.startswith(API_PREFIX)]
        api = Map([Rule(r.rule, methods=r.methods, endpoint=r.endpoint) for r in rules])
        app.extensions["portal_api_rules"] = api
    api.bind_to_environ(req.environ).match()  # raises NotFound or MethodNotAllowed


def _cancelled(exc: Exception) -> flask.Response:
    """A statement cancelled by its time limit: 503 and one sentence, not a 500."""
    orig = getattr(exc, "orig", exc)
    if isinstance(exc, QueryTimeout):
        return error_response(503, str(exc))
    if isinstance(orig, psycopg.errors.QueryCanceled):
        return error_response(503, str(QueryTimeout(time_limit())))
    raise exc


def install(server: flask.Flask) -> None:
    """Answer 400/404/405/413/500 (any HTTP error) on ``/api/*`` with the JSON error body, and
    a query cancelled by its time limit with 503."""
    server.before_request(_api_only)
    server.register_error_handler(HTTPException, _handle)
    for kind in (QueryTimeout, psycopg.errors.QueryCanceled, sqlalchemy.exc.OperationalError):
        server.register_error_handler(kind, _cancelled)
