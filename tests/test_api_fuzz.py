"""The REST API is described and holds to it: schemathesis against a live ``portal web``.

The OpenAPI document is generated from the app's routes, so a blueprint without a description
still appears (generic JSON answer, the shared error body). Schemathesis then sends valid and
invalid requests to every operation of a real gunicorn-served portal on its own database:
no answer may be a 5xx, and every answer must match the document.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal import requires
from portal.apidoc import Param, describe
from portal.auth import tokens
from portal.auth.identity import Identity
from portal.db import engine as db_engine
from portal.db import migrate
from portal.web import openapi
from tests.browser import PortalProcess
from tests.conftest import free_port

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# requests in all, shared by the operations (at least MIN_EXAMPLES each per mode): bounded as
# plugins add routes (FUZZ_EXAMPLES=400 FUZZ_RANDOM=1: a longer hunt by hand, per operation)
BUDGET = 600
MIN_EXAMPLES = 10
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))


class Live:
    """A running portal and the headers of an operator token in its database."""

    def __init__(self, url: str, auth: dict[str, str], log: Path) -> None:
        self.url = url
        self.auth = auth
        self.log = log


@pytest.fixture(scope="module")
def live(
    pg_server: str, portal_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """``portal web`` on a database of its own (the fuzzer stores alerts; others count rows)."""
    url = f"{pg_server}/obsportal_fuzz_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    migrate.upgrade(url)
    who = Identity("test-api-fuzz", "cli", "admin", "local")
    secret = tokens.create(url, who, "fuzz-operator", "operator")
    tmp = tmp_path_factory.mktemp("fuzz")
    env = {
        "PORTAL_DATABASE_URL": url,
        "PORTAL_DATA_DIR": str(tmp / "var"),
        "PORTAL_WEB_BIND": f"127.0.0.1:{free_port()}",
        "PORTAL_ANONYMOUS": "none",
        "PORTAL_QUERY_TIMEOUT_SECONDS": "5",
    }
    try:
        with PortalProcess(env, tmp / "web.log") as portal:
            yield Live(portal.url, {"Authorization": f"Bearer {secret}"}, tmp / "web.log")
    finally:
        db_engine.dispose_all()
        db_engine.drop_database(url)


def test_the_document_names_every_api_route_with_its_role(live: Live) -> None:
    anonymous = httpx.get(f"{live.url}{openapi.PATH}", timeout=10)
    assert anonymous.status_code == 401  # declared viewer: it names every route and role
    doc = httpx.get(f"{live.url}{openapi.PATH}", headers=live.auth, timeout=10).json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert {"/api/logs", "/api/alerts", "/api/whoami", "/api/pages", openapi.PATH} <= set(paths)
    assert paths["/api/alerts"]["post"]["x-portal-role"] == "operator"
    assert paths["/api/logs"]["get"]["x-portal-role"] == "viewer"
    assert paths["/healthz"]["get"]["security"] == []  # described and public
    logs_params = {p["name"] for p in paths["/api/logs"]["get"]["parameters"]}
    assert {"host", "since", "grep", "limit", "format"} <= logs_params
    assert all(
        op["responses"]["default"]["content"]["application/json"]["schema"]
        == {"$ref": "#/components/schemas/Error"}
        for methods in paths.values()
        for op in methods.values()
    )


def test_an_undescribed_blueprint_still_appears_with_the_generic_answer() -> None:
    app = flask.Flask("openapi_probe")
    bp = flask.Blueprint("station", __name__)

    @bp.post("/api/station/<int:beam>/<name>")
    @requires("operator")
    def poke(beam: int, name: str) -> flask.Response:
        """Poke one beam."""
        return flask.jsonify({})

    @bp.get("/api/station/runs/<run_id>")
    @requires("viewer")
    @describe(params=[Param("run_id", {"type": "integer"}, where="path"), Param("full")])
    def run(run_id: str) -> flask.Response:
        return flask.jsonify({})

    @bp.get("/station/page")
    @requires("viewer")
    def page() -> str:
        return ""

    @bp.get("/station/described")
    @requires("viewer")
    @describe(responses={200: {"type": "object"}})
    def described() -> flask.Response:
        return flask.jsonify({})

    app.register_blueprint(bp)
    doc = openapi.document(app)
    assert set(doc["paths"]) == {
        "/api/station/{beam}/{name}",
        "/api/station/runs/{run_id}",
        "/station/described",
    }
    run_params = doc["paths"]["/api/station/runs/{run_id}"]["get"]["parameters"]
    assert [(p["name"], p["in"], p["schema"]["type"]) for p in run_params] == [
        ("run_id", "path", "integer"),  # the description wins over the converter's string
        ("full", "query", "string"),
    ]
    op = doc["paths"]["/api/station/{beam}/{name}"]["post"]
    assert op["summary"] == "Poke one beam." and op["x-portal-role"] == "operator"
    assert {p["name"]: p["schema"]["type"] for p in op["parameters"]} == {
        "beam": "integer",
        "name": "string",
    }
    assert set(op["responses"]) == {"200", "default"}


def _fuzz(
    op: Any, mode: schemathesis.GenerationMode, live: Live, sent: list[str], examples: int
) -> list[str]:
    """Run ``op`` in ``mode`` (``sent`` collects what was sent); the failure's report, if any."""
    found: list[str] = []

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=os.environ.get("FUZZ_RANDOM") is None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=op.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=live.auth, checks=CHECKS, timeout=30)
        sent.append(case.operation.label)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        pass  # negative mode on an operation with no input: nothing to make invalid
    except (Exception, BaseExceptionGroup) as exc:  # every failure, reported with its operation
        found.append(f"{op.method.upper()} {op.path} ({mode.value}): {exc}")
    return found


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(live: Live) -> None:
    schema = schemathesis.openapi.from_url(
        f"{live.url}{openapi.PATH}", headers=live.auth, timeout=30
    )
    operations = []
    for result in schema.get_all_operations():  # an operation the loader cannot read fails here
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    assert {"/api/logs", "/api/alerts", "/api/whoami", "/healthz"} <= {o.path for o in operations}
    failures: list[str] = []
    sent: list[str] = []
    examples = EXAMPLES or max(MIN_EXAMPLES, BUDGET // (2 * len(operations)))
    for op in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            failures += _fuzz(op, mode, live, sent, examples)
    assert not failures, "\n\n".join(failures)
    assert sent.count("POST /api/alerts") > examples and sent.count("GET /api/logs") > examples
    # an exception after the answer started (a streamed body) shows only in the server's log
    assert "Traceback" not in live.log.read_text(errors="replace")
