"""``/api/ops``: request an action run, follow it, read the history and maintenance windows.

Viewers read; acting needs the action's role (operator by default; a viewer gets 403). A run
is queued for the ops worker and answered with 202; a dry run is executed at once and answered
with its steps and the exact commands it would run.
"""

from __future__ import annotations

import re
from typing import Any

import flask

from portal import routes
from portal.apidoc import Param, describe
from portal.auth.roles import requires
from portal.errors import PortalError
from portal.ops import runs

blueprint = flask.Blueprint("ops_api", __name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
RUN_BODY = {
    "type": "object",
    "required": ["action", "reason"],
    "properties": {
        "action": {"type": "string"},
        "hosts": {"type": "array", "items": {"type": "string"}},
        "params": {"type": "object", "additionalProperties": {"type": "string"}},
        "reason": {"type": "string"},
        "dry_run": {"type": "boolean"},
    },
}
RUN = {"type": "object", "required": ["id", "action", "state", "steps"]}
RUNS = {"type": "array", "items": RUN}
LIST = {"type": "array", "items": {"type": "object"}}
INT = {"type": "integer", "minimum": 1}
RUN_ID = Param("run_id", INT, "an ops run's id", where="path", required=True)


def _fail(exc: PortalError) -> flask.Response:
    return routes.error_response(403 if isinstance(exc, runs.Forbidden) else 400, str(exc))


def _run_id(raw: str) -> int:
    """A run id from the path: a positive whole number, else one clear error."""
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**63:
        raise PortalError(f"run id {raw[:40]!r} is not a positive whole number")
    return int(raw)


def _json(run: runs.Run) -> dict[str, Any]:
    from portal.timeparse import stamp

    out = run.as_dict()
    for key in ("created_at", "started_at", "finished_at"):
        out[key] = stamp(out[key]) if out[key] else None
    for step in out["steps"]:
        for key in ("started_at", "finished_at"):
            step[key] = stamp(step[key]) if step[key] else None
    return out


@blueprint.get("/api/ops/actions")
@requires("viewer")
@describe(responses={200: LIST}, tags=["ops"])
def list_actions() -> flask.Response:
    """The actions this portal offers: name, help, role, parameters (name -> pattern)."""
    try:
        found = runs.actions(routes.settings())
    except PortalError as exc:
        return _fail(exc)
    return flask.jsonify(
        [
            {
                "name": a.name,
                "help": a.help,
                "role": a.role,
                "params": a.params,
                "hosts": a.hosts,
                "dangerous": a.dangerous,
            }
            for a in sorted(found.values(), key=lambda a: a.name)
        ]
    )


@blueprint.post("/api/ops/runs")
@requires("operator")
@describe(body=RUN_BODY, responses={200: RUN, 202: RUN}, tags=["ops"])
def request_run() -> flask.Response:
    """Request an action on hosts (with a reason); 202 and the queued run, or 200 and the
    finished dry run with the commands it would run."""
    body = flask.request.get_json(silent=True)
    if not isinstance(body, dict):
        return routes.error_response(400, "send a JSON object: action, hosts, params, reason")
    hosts, params = body.get("hosts") or [], body.get("params") or {}
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        return routes.error_response(400, "hosts must be a list of host names")
    if not isinstance(params, dict):
        return routes.error_response(400, "params must be an object of name: value")
    if not isinstance(body.get("action"), str) or not isinstance(body.get("reason", ""), str):
        return routes.error_response(400, "action and reason must be strings")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        return routes.error_response(400, "dry_run must be true or false")
    cfg = routes.settings()
    try:
        run_id = runs.request(
            cfg,
            routes.identity(),
            body["action"],
            hosts,
            params,
            body.get("reason", ""),
            dry_run=dry_run,
        )
        run = runs.get(cfg, run_id)
    except PortalError as exc:
        return _fail(exc)
    resp = flask.jsonify(_json(run))
    resp.status_code = 200 if dry_run else 202
    return resp


@blueprint.get("/api/ops/runs")
@requires("viewer")
@describe(
    params=[Param("host"), Param("action"), Param("limit", INT), Param("before", INT)],
    responses={200: RUNS},
    tags=["ops"],
)
def list_runs() -> flask.Response:
    """Runs, newest first (without steps); ``before`` pages back by run id."""
    args = flask.request.args
    try:
        limit = int(args.get("limit", "50"))
        before = int(args["before"]) if args.get("before") else None
    except ValueError:
        return routes.error_response(400, "limit and before must be whole numbers")
    if limit < 1 or (before is not None and not 0 < before < 2**63):
        return routes.error_response(400, "limit and before must be 1 or more (before < 2^63)")
    for name in ("host", "action"):
        value = args.get(name) or ""
        if value and not NAME.fullmatch(value):
            return routes.error_response(400, f"{name} {value[:40]!r} is not a valid name")
    found = runs.history(
        routes.settings(), limit, args.get("host") or None, args.get("action") or None, before
    )
    return flask.jsonify([_json(r) for r in found])


@blueprint.get("/api/ops/runs/<run_id>")
@requires("viewer")
@describe(params=[RUN_ID], responses={200: RUN}, tags=["ops"])
def get_run(run_id: str) -> flask.Response:
    """One run with its steps."""
    try:
        return flask.jsonify(_json(runs.get(routes.settings(), _run_id(run_id))))
    except PortalError as exc:
        return routes.error_response(404, str(exc))


@blueprint.post("/api/ops/runs/<run_id>/cancel")
@requires("operator")
@describe(params=[RUN_ID], tags=["ops"])
def cancel_run(run_id: str) -> flask.Response:
    """Cancel a queued run, or ask a running one to stop before its next step."""
    body = flask.request.get_json(silent=True) or {}
    reason = body.get("reason", "") if isinstance(body, dict) else ""
    try:
        number = _run_id(run_id)
        state = runs.cancel(routes.settings(), routes.identity(), number, str(reason))
    except PortalError as exc:
        return _fail(exc)
    return flask.jsonify({"id": number, "state": state})


@blueprint.get("/api/ops/maintenance")
@requires("viewer")
@describe(responses={200: LIST}, tags=["ops"])
def list_maintenance() -> flask.Response:
    """Open maintenance windows: host, who, why, until, silence id."""
    from portal.ops import maintenance

    return flask.jsonify([w.as_dict() for w in maintenance.open_windows(routes.settings())])


@blueprint.get("/api/ops/status")
@requires("viewer")
@describe(tags=["ops"])
def status() -> flask.Response:
    """Per host: maintenance, drain and lock; and whether an ops worker runs."""
    from portal.ops import status as ops_status

    return flask.jsonify(ops_status.report(routes.settings()))
