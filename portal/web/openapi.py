"""The OpenAPI 3.1 document of every REST route, built from the serving app's ``url_map``.

Walking the routes (not a list) means a plugin's new blueprint is described the moment it is
mounted: with its ``portal.apidoc.describe`` marks, or else a generic JSON answer. Every error
shares the one body of ``portal.routes.error_response``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flask

from portal import __version__
from portal.apidoc import Description, Media, Param, describe, description_of
from portal.auth.roles import PUBLIC, declared, requires

PATH = "/api/openapi.json"
API_PREFIX = "/api/"
METHODS = ("get", "post", "put", "patch", "delete")
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one line, never a traceback"}},
}
ANY_JSON: dict[str, Any] = {}
_CONVERTERS: dict[str, dict[str, Any]] = {
    "default": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    "string": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    "path": {"type": "string", "minLength": 1},
    "int": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},  # PostgreSQL bigint
    "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
}
_RULE_ARG = re.compile(r"<(?:(?P<conv>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")


def _path_params(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """``/api/x/<int:n>`` -> ``/api/x/{n}`` and its path parameters from Flask's converters."""
    params = []
    for m in _RULE_ARG.finditer(rule):
        conv = m.group("conv") or "default"
        if conv == "any":
            choices = [c.strip().strip("'\"") for c in (m.group("args") or "").split(",")]
            schema: dict[str, Any] = {"type": "string", "enum": [c for c in choices if c]}
        else:
            schema = dict(_CONVERTERS.get(conv, _CONVERTERS["default"]))
        params.append({"name": m.group("name"), "in": "path", "required": True, "schema": schema})
    return _RULE_ARG.sub(lambda m: "{" + m.group("name") + "}", rule), params


def _param(p: Param) -> dict[str, Any]:
    schema: dict[str, Any] = dict(p.schema)
    if p.repeat:
        schema = {"type": "array", "items": schema}
    out: dict[str, Any] = {"name": p.name, "in": p.where, "schema": schema}
    if p.required or p.where == "path":
        out["required"] = True
    if p.description:
        out["description"] = p.description
    if p.repeat:
        out.update(style="form", explode=True)
    return out


def _response(status: int, spec: Mapping[str, Any] | Media) -> dict[str, Any]:
    if isinstance(spec, Media):
        content = {t: {"schema": dict(s)} for t, s in spec.types.items()}
        return {"description": spec.description or str(status), "content": content}
    return {"description": str(status), "content": {"application/json": {"schema": dict(spec)}}}


def operation(view: Any, method: str, path_params: list[dict[str, Any]]) -> dict[str, Any]:
    """One operation: the view's description (or the generic one), its role and the errors."""
    desc = description_of(view) or Description()
    role = declared(view) or "undeclared"
    doc = (getattr(view, "__doc__", None) or "").strip()
    described = {(p.where, p.name): _param(p) for p in desc.params}
    # a described path parameter (e.g. an id as an integer) replaces the converter's guess
    params = [described.pop(("path", p["name"]), p) for p in path_params]
    params += [p for (where, _), p in described.items() if where != "path"]
    responses = {str(s): _response(s, r) for s, r in sorted(desc.responses.items())}
    if not any(s.startswith("2") or s.startswith("3") for s in responses):
        responses["200"] = _response(200, ANY_JSON)
    responses["default"] = {
        "description": "any error: one JSON line (400 bad input, 401/403 access, 404, 405, "
        "413 too large, 429 too many, 503 a backend is away)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    op: dict[str, Any] = {
        "operationId": f"{method}_{getattr(view, '__name__', 'view')}",
        "summary": desc.summary or (doc.splitlines()[0] if doc else ""),
        "description": (doc + "\n\n" if doc else "") + f"Role: {role}.",
        "x-portal-role": role,
        "parameters": params,
        "responses": responses,
        "security": [] if role == PUBLIC else [{"bearer": []}, {"session": []}],
    }
    if desc.tags:
        op["tags"] = list(desc.tags)
    if desc.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": dict(desc.body)}},
        }
    return op


def document(app: flask.Flask) -> dict[str, Any]:
    """The document for ``app``: every ``/api/*`` rule, and any other rule that is described."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        if view is None or not (rule.rule.startswith(API_PREFIX) or description_of(view)):
            continue
        path, path_params = _path_params(rule.rule)
        for method in METHODS:
            if method.upper() in (rule.methods or ()):
                paths.setdefault(path, {})[method] = operation(view, method, path_params)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "obsportal API",
            "version": __version__,
            "description": "Generated from the routes this portal serves (plugins included).",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "portal tokens"},
                "session": {"type": "apiKey", "in": "cookie", "name": "obsportal_session"},
            },
        },
    }


blueprint = flask.Blueprint("openapi", __name__)


@blueprint.get(PATH)
@requires("viewer")  # it names every route and role: for those who may use the portal
@describe("This document: every REST route, its parameters, answers and role")
def openapi_json() -> flask.Response:
    """The OpenAPI 3.1 document, built once per app (routes are fixed once requests are served)."""
    app = flask.current_app
    doc = app.extensions.get("portal_openapi")
    if doc is None:
        doc = app.extensions["portal_openapi"] = document(app)
    return flask.jsonify(doc)
