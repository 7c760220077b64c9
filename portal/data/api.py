"""REST producer API and catalog search: ``/api/products``, ``/api/pointings``,
``/api/beam-events`` (POST: a scientist's or operator's bearer token) and ``GET /api/products``.

POST bodies are a JSON list of records or ``{"products": [...]}``; a bad record refuses the
whole request with one line naming it, so nothing is half-registered.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from portal import routes
from portal.auth import audit
from portal.auth.roles import requires
from portal.data import catalog, producer
from portal.errors import PortalError

blueprint = Blueprint("data_api", __name__)
MAX_RECORDS = 50_000


def _records(key: str) -> list[Any]:
    body = request.get_json(silent=True)
    if isinstance(body, dict) and key in body:
        body = body[key]
    if not isinstance(body, list):
        raise PortalError(f"the body must be a JSON list of records or {{{key!r}: [...]}}")
    if len(body) > MAX_RECORDS:
        raise PortalError(f"at most {MAX_RECORDS} records per request, got {len(body)}")
    return body


def _register(key: str, table: str, columns: Any, convert: Any) -> Response:
    cfg = routes.settings()
    try:
        rows = producer.rows_of(_records(key), convert, key.rstrip("s").replace("_", " "))
    except PortalError as exc:
        return routes.error_response(400, str(exc))
    try:
        if table == "data_products":
            new = catalog.store_products(cfg.database_url, rows)
        else:
            new = catalog.store(cfg.database_url, table, columns, rows)
    except Exception as exc:  # noqa: BLE001 - the database's one-line reason, never a traceback
        return routes.error_response(503, f"not registered: {str(exc).splitlines()[0]}")
    entry = audit.Entry(
        action=f"data.register.{key}", target=table, params={"records": len(rows), "new": new}
    )
    audit.record(cfg.database_url, routes.identity(), entry)
    return jsonify({"accepted": len(rows), "new": new if table == "data_products" else None})


@blueprint.post("/api/products")
@requires("scientist")
def post_products() -> Response:
    from portal.data.kinds import all_kinds

    cfg = routes.settings()
    kinds = all_kinds(cfg)
    from portal.data import settings as data_settings

    site = str(data_settings.value(cfg, "PORTAL_DATA_SITE"))
    return _register(
        "products",
        "data_products",
        producer.PRODUCT_COLUMNS,
        lambda r: producer.product_row(r, kinds, site),
    )


@blueprint.post("/api/pointings")
@requires("scientist")
def post_pointings() -> Response:
    return _register("pointings", "pointings", producer.POINTING_COLUMNS, producer.pointing_row)


@blueprint.post("/api/beam-events")
@requires("scientist")
def post_beam_events() -> Response:
    return _register(
        "beam_events", "beam_events", producer.BEAM_EVENT_COLUMNS, producer.beam_event_row
    )


def _query() -> catalog.Query:
    from portal.timeparse import parse_time

    a = request.args

    def number(key: str, cast: Any) -> Any:
        raw = a.get(key, "")
        if not raw:
            return None
        try:
            return cast(raw)
        except ValueError:
            raise PortalError(f"{key} {raw!r} is not a number") from None

    limit = number("limit", int)
    limit = 100 if limit is None else limit
    if not 1 <= limit <= 10_000:
        raise PortalError("limit must be between 1 and 10000")
    return catalog.Query(
        kind=a.get("kind", ""),
        beam=number("beam", int),
        site=a.get("site", ""),
        state=a.get("state", ""),
        name=a.get("name", ""),
        since=parse_time(a["since"], "since") if a.get("since") else None,
        until=parse_time(a["until"], "until") if a.get("until") else None,
        ra_deg=number("ra", float),
        dec_deg=number("dec", float),
        radius_deg=number("radius", float) or 1.0,
        limit=limit,
    )


@blueprint.get("/api/products")
@requires("viewer")
def get_products() -> Response:
    try:
        found = catalog.search(routes.settings().database_url, _query())
    except PortalError as exc:
        return routes.error_response(400, str(exc))
    return jsonify({"products": [catalog.jsonable(f) for f in found]})
