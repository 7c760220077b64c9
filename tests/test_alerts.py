"""Alert rules (promtool), runbook links, and the ``/api/alerts`` webhook into the events table.

The end-to-end test runs a real Prometheus and a real Alertmanager on free ports: a rule that
fires at once travels Prometheus -> Alertmanager -> the real app's webhook (Alertmanager sends
the token of the stack's generated config) -> ``events`` (topic ``alert``). The payload checks
use the alerts blueprint alone.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml
from flask import Flask
from werkzeug.serving import make_server

from portal import settings
from portal.alerts import rules
from portal.alerts.query import latest
from portal.alerts.webhook import blueprint
from portal.auth import bootstrap
from portal.db.engine import get_engine
from portal.db.tables import audit_log
from portal.events import bus as events
from portal.settings import Settings
from portal.stack import configs, process
from tests.conftest import REPO, Alerting, free_port, run_portal, shared_tmpdir, start_alerting

RULE_FILES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))


def _all_rules() -> list[dict]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out.extend(r for r in group["rules"] if "alert" in r)
    return out


def _anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of the Markdown headings."""
    heads = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in heads}


def test_every_shipped_rule_file_is_registered_once_by_its_capability() -> None:
    registered = [p.name for p in rules.rule_files(settings.get())]
    assert sorted(registered) == [p.name for p in RULE_FILES]


def test_promtool_check_and_unit_tests_pass() -> None:
    results = rules.check(rules.rule_files(settings.get()), rules.tests_dir())
    assert [r.step for r in results] == ["check rules", "test rules"]
    for r in results:
        assert r.ok, r.output
    assert "SUCCESS" in results[1].output


def test_promtool_check_reports_a_broken_rule(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(
        "groups:\n- name: g\n  rules:\n  - alert: X\n    expr: rate(foo[5m]\n"
    )
    results = rules.check([tmp_path / "bad.yml"], tests=tmp_path / "none")
    assert not results[0].ok
    assert "bad.yml" in results[0].output


def test_named_alerts_exist_with_annotations_and_runbook_anchors() -> None:
    found = {r["alert"]: r for r in _all_rules()}
    wanted = {
        "HostDown",
        "DiskFillsWithin24h",
        "RealtimeLagging",
        "RealtimePacketLoss",
        "BatchBacklogGrowing",
        "CollectorSpoolNotEmpty",
        "DatabaseIngestLagging",
    }
    assert wanted <= set(found)
    assert "predict_linear" in found["DiskFillsWithin24h"]["expr"]
    anchors = _anchors((REPO / "docs" / "runbooks.md").read_text())
    for name, rule in found.items():
        ann = rule["annotations"]
        assert ann.get("summary") and ann.get("description"), name
        doc, _, anchor = ann["runbook_url"].partition("#")
        assert doc == "docs/runbooks.md", name
        assert anchor in anchors, f"{name}: no heading for #{anchor} in docs/runbooks.md"


def _payload(status: str = "firing", **labels: str) -> dict:
    return {
        "version": "4",
        "receiver": "portal",
        "status": status,
        "groupKey": "{}:{}",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "HostDown", "host": "cn07", **labels},
                "annotations": {"summary": "Host cn07 is down"},
                "startsAt": "2026-12-01T06:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": "f00dcafe",
            }
        ],
    }


@pytest.fixture
def client(cfg: Settings) -> Iterator:
    app = Flask("test_alerts")
    app.config["PORTAL_SETTINGS"] = cfg
    app.register_blueprint(blueprint)
    yield app.test_client()


def test_webhook_records_one_event_per_alert(client, database_url: str) -> None:
    before = events.last_id(database_url)
    body = _payload()
    body["alerts"].append({**body["alerts"][0], "fingerprint": "beef", "status": "resolved"})
    resp = client.post("/api/alerts", json=body)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["recorded"] == 2
    stored = events.history(database_url, ["alert"], since=before)
    assert [(e.payload["fingerprint"], e.payload["status"]) for e in stored] == [
        ("f00dcafe", "firing"),
        ("beef", "resolved"),
    ]
    assert stored[0].payload["labels"]["host"] == "cn07"
    assert stored[0].payload["annotations"]["summary"] == "Host cn07 is down"
    assert stored[0].payload["startsAt"] == "2026-12-01T06:00:00Z"
    assert stored[0].source == "alertmanager:portal"


def test_webhook_accepts_grafana_contact_point_payload(client, database_url: str) -> None:
    before = events.last_id(database_url)
    body = {**_payload(), "version": "1", "orgId": 1, "receiver": "portal"}
    resp = client.post("/api/alerts", json=body)
    assert resp.status_code == 200, resp.get_json()
    (stored,) = events.history(database_url, ["alert"], since=before)
    assert stored.source == "grafana:portal"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ([1, 2], "must be a JSON object"),
        ({**_payload(), "version": "3"}, "version '3'"),
        ({**_payload(), "alerts": [{**_payload()["alerts"][0], "labels": {"x": 1}}]}, "labels"),
        ({**_payload(), "alerts": "x"}, "'alerts' must be a list"),
        ({**_payload(), "alerts": [{"status": "weird"}]}, "alerts[0].status"),
        # permanently bad data is 400 (Alertmanager would retry a 503 forever)
        (_payload(host="cn\x0007"), "alerts[0].labels.host contains a NUL character"),
        (_payload(host="cn\ud80007"), "alerts[0].labels.host contains an invalid character"),
        (
            {**_payload(), "alerts": [{**_payload()["alerts"][0], "startsAt": "not a time"}]},
            "alerts[0].startsAt is not a timestamp",
        ),
        ({**_payload(), "alerts": _payload()["alerts"] * 1001}, "at most 1000 are accepted"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_webhook_rejects_bad_payloads_and_stores_nothing(
    client, database_url: str, body: object, message: str
) -> None:
    before = events.last_id(database_url)
    if isinstance(body, str):
        resp = client.post("/api/alerts", data=body, content_type="application/json")
    else:
        resp = client.post("/api/alerts", json=body)
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert message in error and "\n" not in error
    assert events.last_id(database_url) == before


def test_webhook_database_outage_is_503_so_alertmanager_retries(
    client, cfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = cfg.replace(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    monkeypatch.setitem(client.application.config, "PORTAL_SETTINGS", dead)
    resp = client.post("/api/alerts", json=_payload())
    assert resp.status_code == 503 and "retry later" in resp.get_json()["error"]


def test_real_app_refuses_huge_and_deeply_nested_bodies(
    cfg: Settings, operator_auth: dict[str, str]
) -> None:
    """Through the real app: a 100 MB notification is 413 before it is read; JSON nested
    100,000 deep is 400 on the webhook and on Dash's callback route, never a 500."""
    from portal.web.app import create_app

    web = create_app(cfg.replace(max_request_bytes=1_000_000)).test_client()
    huge = web.post(
        "/api/alerts",
        data=b"[" + b" " * 100_000_000 + b"]",
        content_type="application/json",
        headers=operator_auth,
    )
    assert huge.status_code == 413 and huge.get_json() == {"error": "request body is too large"}
    deep = "[" * 100_000 + "]" * 100_000
    resp = web.post(
        "/api/alerts", data=deep, content_type="application/json", headers=operator_auth
    )
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "request body is JSON nested too deeply"}
    dash = web.post("/_dash-update-component", data=deep, content_type="application/json")
    assert dash.status_code == 400


def test_webhook_half_bad_notification_is_rejected_whole(client, database_url: str) -> None:
    body = _payload()
    body["alerts"].append({**body["alerts"][0], "fingerprint": ""})
    before = events.last_id(database_url)
    resp = client.post("/api/alerts", json=body)
    assert resp.status_code == 400
    assert "alerts[1].fingerprint" in resp.get_json()["error"]
    assert events.last_id(database_url) == before


@pytest.fixture
def portal_server(cfg: Settings) -> Iterator[str]:
    """The real app, access control included, served on the port of ``cfg.web_url``."""
    from portal.web.app import create_app

    server = make_server("127.0.0.1", cfg.web_port, create_app(cfg), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield cfg.web_url
    server.shutdown()
    thread.join(10)


def test_firing_rule_reaches_events_through_real_alertmanager(
    cfg: Settings, portal_server: str, database_url: str
) -> None:
    """Prometheus -> Alertmanager (with the stack's generated config and its token) -> the
    portal's webhook behind access control -> ``events``, audited as the Alertmanager token."""
    bootstrap.register_alertmanager_token(cfg)
    anonymous = httpx.post(f"{portal_server}/api/alerts", json=_payload(), timeout=10)
    assert anonymous.status_code == 401  # the server checks tokens: Alertmanager must send one
    tmp = shared_tmpdir("obsportal-alerts-e2e-")
    rule = {
        "alert": "PortalE2EAlert",
        "expr": 'label_replace(vector(1), "host", "e2e-host", "", "")',
        "for": "0s",
        "labels": {"severity": "warning"},
        "annotations": {"summary": "e2e alert fired"},
    }
    am_config = configs.alertmanager_config(cfg)
    (hook,) = am_config["receivers"][0]["webhook_configs"]
    assert hook["url"] == f"{portal_server}/api/alerts"
    token_file = hook["http_config"]["authorization"]["credentials_file"]
    assert token_file == str(cfg.data_dir / "secrets" / "alertmanager.token")
    am_conf = configs.write(tmp / "alertmanager.yml", am_config)
    before = events.last_id(database_url)
    alerting: Alerting | None = None
    try:
        alerting = start_alerting(tmp, rule, am_conf)

        def arrived() -> bool:
            got = events.history(database_url, ["alert"], since=before)
            return any(e.payload["alertname"] == "PortalE2EAlert" for e in got)

        assert process.wait_until(arrived, 60, interval=0.5), process.tail(tmp / "alertmanager.log")
        got = [
            e
            for e in events.history(database_url, ["alert"], since=before)
            if e.payload["alertname"] == "PortalE2EAlert"
        ]
        ev = got[0]
        assert ev.payload["status"] == "firing"
        assert ev.payload["labels"]["host"] == "e2e-host"
        assert ev.payload["annotations"]["summary"] == "e2e alert fired"
        assert ev.payload["fingerprint"]
        with get_engine(database_url).connect() as conn:
            audited = conn.execute(
                sa.select(audit_log.c.actor, audit_log.c.role).where(
                    audit_log.c.action == "alert.received",
                    audit_log.c.target == "PortalE2EAlert",
                )
            ).all()
        assert audited and set(audited) == {("token:alertmanager", "operator")}
        firing = {a.alertname for a in latest(database_url)}
        assert "PortalE2EAlert" in firing
        out = run_portal("alerts", "list", check=True).stdout
        assert "e2e alert fired" in out
    finally:
        for pid in alerting.pids if alerting else []:
            assert process.stop(pid, timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)


def test_stack_prometheus_loads_the_repo_rules(stack: Settings) -> None:
    """The local stack's real Prometheus evaluates prometheus/rules/*.yml."""

    def names() -> set[str]:
        data = httpx.get(f"{stack.prometheus_url}/api/v1/rules", timeout=5).json()["data"]
        return {r["name"] for g in data["groups"] for r in g["rules"] if r["type"] == "alerting"}

    assert process.wait_until(lambda: len(names()) > 0, 30)
    assert names() == {r["alert"] for r in _all_rules()}
