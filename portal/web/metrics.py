"""The portal's own Prometheus metrics, correct across several gunicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``portal web`` sets it) every worker writes its samples
to files there and ``/metrics`` aggregates them, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import time

import flask
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from portal.auth.roles import PUBLIC, requires

REQUESTS = Counter(
    "portal_http_requests_total", "HTTP requests served by the portal", ["route", "status"]
)
LATENCY = Histogram(
    "portal_http_request_duration_seconds", "Time to answer an HTTP request", ["route"]
)
PAGES = Gauge(
    "portal_pages",
    "Pages loaded, by section and state",
    ["section", "state"],
    multiprocess_mode="liveall",
)
PAGE_ERRORS = Counter(
    "portal_page_errors_total", "Exceptions raised by a page's layout or callbacks", ["page"]
)


def _route() -> str:
    rule = flask.request.url_rule
    return rule.rule if rule is not None else "unmatched"


def install(server: flask.Flask) -> None:
    """Time every request and serve ``/metrics``."""

    @server.before_request
    def _start() -> None:
        flask.g.portal_t0 = time.perf_counter()

    @server.after_request
    def _count(resp: flask.Response) -> flask.Response:
        route = _route()
        if route != "/metrics":
            REQUESTS.labels(route, str(resp.status_code)).inc()
            t0 = getattr(flask.g, "portal_t0", None)
            if t0 is not None:
                LATENCY.labels(route).observe(time.perf_counter() - t0)
        return resp

    @server.get("/metrics")
    @requires(PUBLIC)  # Prometheus scrapes it; request counts and timings only
    def metrics() -> flask.Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            body = generate_latest(registry)
        else:
            body = generate_latest(REGISTRY)
        return flask.Response(body, mimetype=CONTENT_TYPE_LATEST)
