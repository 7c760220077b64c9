"""REST producer API and catalog search: ``/api/products``, ``/api/pointings``,
``/api/beam-events`` (POST: a scientist's or operator's bearer token) and ``GET /api/products``.

POST bodies are a JSON list of records or ``{"products": [...]}``; a bad record refuses the
whole request with one line naming it, so nothing is half-registered.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg
from flask import Blueprint, Response, jsonify, request

from portal import routes
from portal.apidoc import Param, describe
from portal.auth import audit
from portal.auth.roles import requires
from portal.data import catalog, producer
from portal.errors import PortalError

blueprint = Blueprint("data_api", __name__)
MAX_RECORDS = 50_000
TAGS = ["data"]

_TIME = {"type": "string", "description": "ISO time, or epoch seconds as a number"}
_PRODUCT = {
    "type": "object",
    "required": ["kind", "name", "path", "size_bytes"],
    "properties": {
        "kind": {"type": "string", "description": "l1, rfi, hhat_daily, ... (portal data kinds)"},
        "name": {"type": "string", "description": "natural key; also its path below a site"},
        "path": {"type": "string"},
        "size_bytes": {"type": "integer", "minimum": 0},
        "checksum": {"type": "string", "description": "ALGORITHM:HEX, e.g. sha256:..."},
        "host": {"type": "string"},
        "site": {"type": "string"},
        "state": {"type": "string", "enum": list(producer.PRODUCT_STATES)},
        "time_start": _TIME,
        "time_end": _TIME,
        "created_at": _TIME,
        "beam": {"type": "integer", "minimum": 0},
        "ra_deg": {"type": "number"},
        "dec_deg": {"type": "number"},
        "retention": {"type": "string"},
        "metadata": {"type": "object"},
    },
}
_POINTING = {
    "type": "object",
    "required": ["time", "beam", "ra_deg", "dec_deg", "duration_s"],
    "properties": {
        "time": _TIME,
        "beam": {"type": "integer", "minimum": 0},
        "ra_deg": {"type": "number"},
        "dec_deg": {"type": "number"},
        "duration_s": {"type": "number", "minimum": 0},
        "rfi_fraction": {"type": "number"},
        "data_bytes": {"type": "integer", "minimum": 0},
        "max_dm": {"type": "number"},
        "n_candidates": {"type": "integer", "minimum": 0},
        "flags": {"type": "object"},
    },
}
_BEAM_EVENT = {
    "type": "object",
    "required": ["time", "beam"],
    "properties": {
        "time": _TIME,
        "beam": {"type": "integer", "minimum": 0},
        "kind": {"type": "string", "description": "dm_adjust (default), restart, ..."},
        "value": {"type": "number"},
        "payload": {"type": "object"},
    },
}
_REGISTERED = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "new": {"type": ["integer", "null"], "description": "products not registered before"},
    },
}


def _body(items: dict[str, Any], key: str) -> dict[str, Any]:
    listed = {"type": "array", "items": items, "maxItems": MAX_RECORDS}
    return {"oneOf": [listed, {"type": "object", "properties": {key: listed}}]}


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
    except (psycopg.DataError, psycopg.IntegrityError, UnicodeError) as exc:  # never storable
        return routes.error_response(400, f"not registered: the database refused them: {exc}")
    except Exception as exc:  # noqa: BLE001 - an outage: the one-line reason, worth a retry
        return routes.error_response(503, f"not registered, retry later: {exc}")
    entry = audit.Entry(
        action=f"data.register.{key}", target=table, params={"records": len(rows), "new": new}
    )
    audit.record(cfg.database_url, routes.identity(), entry)
    return jsonify({"accepted": len(rows), "new": new if table == "data_products" else None})


@blueprint.post("/api/products")
@requires("scientist")
@describe(body=_body(_PRODUCT, "products"), responses={200: _REGISTERED}, tags=TAGS)
def post_products() -> Response:
    """Register data products (idempotent on the name)."""
    from portal.data import settings as data_settings
    from portal.data.kinds import all_kinds

    cfg = routes.settings()
    kinds = all_kinds(cfg)
    site = str(data_settings.value(cfg, "PORTAL_DATA_SITE"))
    return _register(
        "products",
        "data_products",
        producer.PRODUCT_COLUMNS,
        lambda r: producer.product_row(r, kinds, site),
    )


@blueprint.post("/api/pointings")
@requires("scientist")
@describe(body=_body(_POINTING, "pointings"), responses={200: _REGISTERED}, tags=TAGS)
def post_pointings() -> Response:
    """Register pointings (idempotent on beam and time)."""
    return _register("pointings", "pointings", producer.POINTING_COLUMNS, producer.pointing_row)


@blueprint.post("/api/beam-events")
@requires("scientist")
@describe(body=_body(_BEAM_EVENT, "beam_events"), responses={200: _REGISTERED}, tags=TAGS)
def post_beam_events() -> Response:
    """Register beam events such as DM adjustments (idempotent on beam, kind and time)."""
    return _register(
        "beam_events", "beam_events", producer.BEAM_EVENT_COLUMNS, producer.beam_event_row
    )


_SEARCH = [
    Param("kind", description="product kind"),
    Param("beam", {"type": "integer", "minimum": 0, "maximum": 100_000}),
    Param("site", description="products with a copy at this site"),
    Param("state", description="complete, deleted, writing, or a replica state at site"),
    Param("name", description="glob on the name (* and ?)"),
    Param("since", description="covering time after: a duration (2h) or an ISO time"),
    Param("until", description="covering time before"),
    Param("ra", {"type": "number"}, "right ascension (deg) of a cone search"),
    Param("dec", {"type": "number"}, "declination (deg) of a cone search"),
    Param("radius", {"type": "number"}, "half-width (deg) of the cone search box, default 1"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "default 100"),
]
_FOUND = {
    "type": "object",
    "properties": {"products": {"type": "array", "items": {"type": "object"}}},
}


def _text(key: str) -> str:
    raw = request.args.get(key, "")
    if len(raw) > producer.MAX_TEXT or not producer.storable_text(raw):
        raise PortalError(f"{key} must be at most {producer.MAX_TEXT} characters of text")
    return raw


def _number(key: str, cast: Any, lo: float, hi: float) -> Any:
    raw = request.args.get(key, "")
    if not raw:
        return None
    try:
        value = cast(raw)
    except ValueError:
        raise PortalError(f"{key} {raw[:40]!r} is not a number") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise PortalError(f"{key} must be between {lo:g} and {hi:g}")
    return value


def _query() -> catalog.Query:
    from portal.timeparse import parse_time

    limit = _number("limit", int, 1, 10_000)
    since, until = _text("since"), _text("until")
    return catalog.Query(
        kind=_text("kind"),
        beam=_number("beam", int, 0, 100_000),
        site=_text("site"),
        state=_text("state"),
        name=_text("name"),
        since=parse_time(since, "since") if since else None,
        until=parse_time(until, "until") if until else None,
        ra_deg=_number("ra", float, -360, 720),
        dec_deg=_number("dec", float, -90, 90),
        radius_deg=_number("radius", float, 0, 180) or 1.0,
        limit=100 if limit is None else limit,
    )


@blueprint.get("/api/products")
@requires("viewer")
@describe(params=_SEARCH, responses={200: _FOUND}, tags=TAGS)
def get_products() -> Response:
    """Search the catalog, newest first, each product with its copies."""
    try:
        found = catalog.search(routes.settings().database_url, _query())
    except PortalError as exc:
        return routes.error_response(400, str(exc))
    return jsonify({"products": [catalog.jsonable(f) for f in found]})
