"""``GET /api/logs``: the CLI's filters over HTTP, streamed as text or JSON lines.

Bad input is a 400 and an unreachable store a 503, each with the JSON body ``{"error": ...}``.
The first record is fetched before the response starts, so errors never arrive mid-body.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import flask
from werkzeug.datastructures import MultiDict

from portal import heavy, routes
from portal.apidoc import Media, Param, describe
from portal.auth.roles import requires
from portal.errors import BackendUnavailable, DatabaseUnavailable, PortalError, QueryTimeout
from portal.logs.filters import build_query
from portal.logs.format import FORMATS, Record, formatter

blueprint = flask.Blueprint("logs_api", __name__)

CHUNK = 1000
MIMETYPES = {"text": "text/plain; charset=utf-8", "jsonl": "application/x-ndjson"}
_YES = {"type": "string", "enum": ["1", "true", "yes", "0", "false", "no", ""]}
PARAMS = (
    Param("host", description="host name (repeatable)", repeat=True),
    Param("component", description="component name or glob (repeatable)", repeat=True),
    Param("level", description="minimum level: DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    Param("since", description="a duration back from now (2h), now-6h, or an ISO time"),
    Param("until", description="as since"),
    Param("grep", description="text the message contains"),
    Param("re", _YES, "grep is a regular expression"),
    Param("i", _YES, "grep ignores case"),
    Param("query", description='a LogQL-style selector: {host="st01"} |= "text"'),
    Param("limit", {"type": "integer", "minimum": 0}, "at most this many lines"),
    Param("format", {"type": "string", "enum": list(FORMATS)}, "text (default) or jsonl"),
    Param("download", _YES, "answer as a .log attachment"),
)


def _int(raw: str | None, name: str) -> int | None:
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise PortalError(f"{name}={raw!r} is not a whole number") from None


def _chunks(first: Record, rest: Iterator[Record], fmt: str) -> Iterator[str]:
    line = formatter(fmt)
    batch = [line(first)]
    for rec in rest:
        batch.append(line(rec))
        if len(batch) >= CHUNK:
            yield "".join(batch)
            batch.clear()
    yield "".join(batch)


def _filename(args: MultiDict[str, str]) -> str:
    parts = [p for p in (args.get("host"), args.get("component")) if p]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)) or "logs"
    return f"{stem}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.log"


@blueprint.get("/api/logs")
@requires("viewer")
@describe(
    "Stored log lines, oldest first, streamed",
    params=PARAMS,
    responses={
        200: Media(
            {"text/plain": {"type": "string"}, "application/x-ndjson": {"type": "string"}},
            "one record per line: text, or one JSON object per line with format=jsonl",
        )
    },
    tags=["logs"],
)
def get_logs() -> flask.Response:
    """Filters: host, component (repeatable, globs), level, since, until, grep (text the message
    contains; a regular expression with ``re=1``), query, limit.

    A query running past ``PORTAL_QUERY_TIMEOUT_SECONDS`` is cancelled: 503 with one sentence;
    so is one whose client left. More than ``PORTAL_HEAVY_QUERIES_PER_USER`` at once: 429.
    """
    args = flask.request.args
    fmt = args.get("format", "text")
    guard: heavy.Guard | None = None
    try:
        if fmt not in FORMATS:
            raise PortalError(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
        q = build_query(
            args.get("query") or None,
            args.getlist("host"),
            args.getlist("component"),
            args.get("level") or None,
            args.get("since") or None,
            args.get("until") or None,
            args.get("grep") or None,
            args.get("i", "") in ("1", "true", "yes"),
            _int(args.get("limit"), "limit"),
            regex=args.get("re", "") in ("1", "true", "yes"),
        )
        from portal.logs.query import stream

        cfg, who = routes.settings(), routes.identity()
        guard = heavy.Guard(
            cfg.data_dir,
            heavy.identity_key(who.kind, who.actor, who.address),
            heavy.limit(cfg.extra),
            flask.request.environ,
        )
        records = stream(cfg.database_url, q)
        first = next(records, None)
    except heavy.TooBusy as exc:
        return routes.error_response(429, str(exc))
    except (DatabaseUnavailable, BackendUnavailable, QueryTimeout) as exc:
        if guard is not None:
            guard.close()
        return routes.error_response(503, str(exc))
    except PortalError as exc:
        if guard is not None:
            guard.close()
        return routes.error_response(400, str(exc))
    except BaseException:
        if guard is not None:
            guard.close()
        raise
    body: Iterator[str] = iter(()) if first is None else _chunks(first, records, fmt)
    assert guard is not None
    resp = flask.Response(flask.stream_with_context(guard.wrap(body)), mimetype=MIMETYPES[fmt])
    if args.get("download", "") in ("1", "true", "yes"):
        resp.headers["Content-Disposition"] = f'attachment; filename="{_filename(args)}"'
    return resp
