"""The Data and Transfers pages render the catalog, rules, forecast and queue; the Data page's
veto button is an operator's, audited; ``portal data transfers`` tells waiting from failing."""

from __future__ import annotations

import json
import sys
from typing import Any

import dash
import flask
import pytest

from portal.auth.identity import Identity
from portal.data import catalog, deletion, rules, sites
from portal.db.engine import connect_raw
from portal.settings import Settings
from tests.conftest import run_portal
from tests.data_fixtures import rows, tag, with_data


@pytest.fixture(scope="module")
def app(cfg: Settings) -> Any:
    from portal.web.app import create_app

    return create_app(cfg)


def _page(path: str) -> dict[str, Any]:
    return next(p for p in dash.page_registry.values() if p["path"] == path)


def _render(app: Any, path: str, **params: Any) -> str:
    page = _page(path)
    with app.test_request_context(path):
        return json.dumps(page["layout"](**params).to_plotly_json(), default=str)


def test_data_and_transfers_pages_show_catalog_rules_queue_and_veto(
    app: Any, cfg: Settings
) -> None:
    t = tag()
    site = f"pg-{t}"
    sites.save(cfg.database_url, sites.Site(site, f"file:///tmp/{t}", capacity_bytes=10**15))
    record: dict[str, Any] = {
        "kind": "hhat_monthly",
        "name": f"page-{t}/stack",
        "path": f"/data/page-{t}",
        "size_bytes": 10**9,
        "metadata": {"t": t},
    }
    catalog.store_products(cfg.database_url, rows([record]))
    rules.add(cfg.database_url, f"page-{t}", "hhat_monthly", site, {"t": t}, 3600)
    rules.evaluate(cfg)
    with connect_raw(cfg.database_url) as conn:
        found = conn.execute(
            "SELECT id FROM data_products WHERE name = %s", (record["name"],)
        ).fetchone()
        assert found is not None
        pid = found[0]
        conn.execute(
            "INSERT INTO replicas (product_id, site, path, state, size_bytes) "
            "VALUES (%s, 'elsewhere', '/x', 'AVAILABLE', 1)",
            (pid,),
        )
    client = app.test_client()
    listed = {p["path"]: p for p in client.get("/api/pages").get_json()}
    assert listed["/data"]["error"] == "" and listed["/transfers"]["error"] == ""

    text = _render(app, "/data", name=f"page-{t}/*")
    assert f"page-{t}/stack" in text and f"page-{t}" in text and "REPLICATING" in text
    assert "data-forecast" in text and "data-budgets" in text and site in text

    who = Identity("page-op", "user", "operator", "127.0.0.1")
    deletion_id = deletion.announce(
        with_data(cfg, veto_window=3600.0), who, record["name"], "elsewhere", "space"
    )
    module = sys.modules[_page("/data")["module"]]
    with app.test_request_context("/data"):
        flask.g.portal_identity = who
        assert module.veto(1, deletion_id, "keep it") == f"deletion {deletion_id} vetoed"
        refused = json.dumps(module.veto(1, deletion_id, "again"), default=str)
    assert "too late to veto" in refused
    with connect_raw(cfg.database_url) as conn:
        audited = conn.execute(
            "SELECT actor, outcome FROM audit_log WHERE action = 'data.delete.veto' "
            "AND target = %s",
            (f"{record['name']}@elsewhere",),
        ).fetchall()
    assert audited == [("user:page-op", "ok")]
    assert getattr(module.veto, "portal_role", None) == "operator"

    queue = _render(app, "/transfers")
    assert site in queue and "waiting in queue" in queue
    out = run_portal("data", "transfers", check=True).stdout
    assert site in out and "waiting in queue" in out and "throughput" in out
