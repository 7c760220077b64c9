"""API error bodies, per-app settings, readiness and URL redaction: one helper each."""

from __future__ import annotations

import logging

import flask
import pytest

from portal import routes
from portal.readiness import http_ready
from portal.redact import redact_url
from portal.settings import Settings
from portal.stack import manager
from portal.web import errors, health
from tests.conftest import free_port


@pytest.fixture(scope="module")
def bare() -> flask.Flask:
    """A plain Flask app with the error handlers and routes that fail in every way."""
    app = flask.Flask("errors_test")
    errors.install(app)

    @app.get("/api/boom")
    def boom() -> str:
        raise RuntimeError("internal detail\nTraceback-like second line")

    @app.get("/boom")
    def page_boom() -> str:
        raise RuntimeError("page failure")

    @app.get("/api/bad")
    def bad() -> str:
        flask.abort(400, "bad thing happened\nand more")

    @app.post("/api/upload")
    def upload() -> str:
        return str(len(flask.request.get_data()))

    app.config["MAX_CONTENT_LENGTH"] = 100
    return app


def test_every_api_error_is_one_json_line(
    bare: flask.Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = bare.test_client()
    with caplog.at_level(logging.ERROR):
        resp = client.get("/api/boom")
    assert resp.status_code == 500 and resp.mimetype == "application/json"
    assert resp.get_json() == {"error": "internal error; the portal's log has the details"}
    assert "internal detail" not in resp.get_data(as_text=True)
    assert "RuntimeError: internal detail" in caplog.text  # the traceback went to the log
    assert client.get("/api/bad").get_json() == {"error": "bad thing happened"}
    big = client.post("/api/upload", data=b"x" * 1000)
    assert big.status_code == 413 and big.get_json() == {"error": "request body is too large"}
    assert client.post("/api/upload", data=b"x").status_code == 200
    page = client.get("/boom")  # not an API path: Flask's own page
    assert page.status_code == 500 and page.mimetype == "text/html"
    with bare.app_context():
        direct = routes.error_response(503, "store down\nstack")
    assert direct.status_code == 503 and direct.get_json() == {"error": "store down"}


@pytest.fixture(scope="module")
def two_apps(cfg: Settings) -> tuple[flask.Flask, flask.Flask, Settings]:
    """Two portals in one process with different settings (Dash's globals are the second's)."""
    from portal.web.app import create_app

    other = cfg.replace(
        prometheus_url=f"http://127.0.0.1:{free_port()}",
        database_url=f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/elsewhere",
    )
    return create_app(cfg), create_app(other), other


def test_each_app_answers_with_its_own_settings(
    two_apps: tuple[flask.Flask, flask.Flask, Settings], cfg: Settings
) -> None:
    first, second, other = two_apps
    for _ in range(2):  # interleaved: nothing leaks through process globals
        a = first.test_client().get("/healthz").get_json()["backends"]
        b = second.test_client().get("/healthz").get_json()["backends"]
        assert a["prometheus"]["url"] == cfg.prometheus_url
        assert b["prometheus"]["url"] == other.prometheus_url != cfg.prometheus_url
        assert a["database"] == {"ok": True, "url": redact_url(cfg.database_url)}
        assert b["database"]["ok"] is False
        assert b["database"]["url"].startswith("postgresql://postgres:***@127.0.0.1:")
        assert "s3cret" not in str(b)
        logs_a = first.test_client().get("/api/logs", query_string={"host": "nobody"})
        logs_b = second.test_client().get("/api/logs", query_string={"host": "nobody"})
        assert logs_a.status_code == 200
        assert logs_b.status_code == 503 and "elsewhere" in logs_b.get_json()["error"]
        with first.test_request_context("/"):
            assert routes.settings() is cfg


def test_the_real_app_answers_api_errors_in_json(
    two_apps: tuple[flask.Flask, flask.Flask, Settings], operator_auth: dict[str, str]
) -> None:
    client = two_apps[0].test_client()
    for method, path, status, text in [
        ("GET", "/api/nope", 404, "no API route /api/nope"),
        ("POST", "/api/nope", 404, "no API route /api/nope"),
        ("GET", "/api/alerts", 405, "GET is not allowed on /api/alerts (use OPTIONS, POST)"),
        ("DELETE", "/api/pages", 405, "DELETE is not allowed on /api/pages"),
    ]:
        resp = client.open(path, method=method)
        assert resp.status_code == status and resp.mimetype == "application/json", path
        assert resp.get_json()["error"].startswith(text)
    bad = client.post(
        "/api/alerts", data="not json", content_type="application/json", headers=operator_auth
    )
    assert bad.status_code == 400 and "not JSON" in bad.get_json()["error"]
    assert client.get("/no-such-page").mimetype == "text/html"  # pages stay Dash's


def test_readiness_is_one_probe_for_every_backend(stack: Settings) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    assert http_ready(stack.prometheus_url) and http_ready(stack.alertmanager_url)
    assert not http_ready(dead) and not http_ready("not a url")
    assert manager.healthy(manager.PROMETHEUS, stack.prometheus_url)
    assert not manager.healthy(manager.PROMETHEUS, dead)
    report = health.check(stack.replace(alertmanager_url=dead))
    assert report["backends"]["prometheus"]["ok"] is True
    assert report["backends"]["alertmanager"] == {"ok": False, "url": dead}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://obs:pw@db:5432/obsportal", "postgresql://obs:***@db:5432/obsportal"),
        ("postgresql://obs@db/obsportal", "postgresql://obs@db/obsportal"),
        ("postgresql://db/x?user=obs&password=pw", "postgresql://db/x?user=obs&password=***"),
        ("https://scraper:p%40ss@prom:9090/api", "https://scraper:***@prom:9090/api"),
        ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
        ("", ""),
    ],
)
def test_urls_are_shown_without_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_stack_status_and_unreachable_database_hide_the_password(cfg: Settings) -> None:
    from portal.db.engine import describe_unreachable

    url = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/x"
    message = describe_unreachable(url, OSError("refused"))
    assert message == f"cannot connect to {redact_url(url)} (refused)" and "s3cret" not in message
    statuses = [manager.ServiceStatus("postgresql", "external", url)]
    assert "s3cret" not in manager.describe(statuses) + manager.as_json(statuses)
