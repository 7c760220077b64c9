"""The portal's own REST endpoints: health and the page list (used by tests and scripts)."""

from __future__ import annotations

import dash
import flask

from portal import routes
from portal.apidoc import describe
from portal.auth.roles import PUBLIC, requires
from portal.web import health, replica

blueprint = flask.Blueprint("portal_api", __name__)
replica.install(blueprint)  # viewer-level reads to PORTAL_DATABASE_READ_URL, when set

HEALTH = {
    "type": "object",
    "required": ["status", "backends"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "backends": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["ok", "url"],
                "properties": {"ok": {"type": "boolean"}, "url": {"type": "string"}},
            },
        },
    },
}
PAGE = {
    "type": "object",
    "required": ["name", "path", "section", "file", "error"],
    "properties": {k: {"type": "string"} for k in ("name", "path", "section", "file", "error")},
}


@blueprint.get("/healthz")
@requires(PUBLIC)  # probes and load balancers: it says only which backends answer
@describe(responses={200: HEALTH}, tags=["portal"])
def healthz() -> flask.Response:
    """Always 200 while the portal runs; the body says which backends answered the last probe
    (at most ``age_s`` seconds ago) and whether this worker's database pool is exhausted."""
    return flask.jsonify(health.monitor(flask.current_app, routes.settings()).report())


@blueprint.get("/api/pages")
@requires("viewer")
@describe(responses={200: {"type": "array", "items": PAGE}}, tags=["portal"])
def pages() -> flask.Response:
    """Every registered page: section, title, path, and the load error of a broken plugin."""
    return flask.jsonify(
        [
            {
                "name": p["name"],
                "path": p["path"],
                "section": p.get("section", ""),
                "file": p.get("file", ""),
                "error": p.get("error", ""),
            }
            for p in dash.page_registry.values()
        ]
    )
