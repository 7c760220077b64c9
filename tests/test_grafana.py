"""Grafana provisioning: generated from code, statically sound, and every panel query proven.

The harness test loads a real Prometheus (TSDB backfilled from the simulator with promtool) and
a fresh PostgreSQL database (simulator seed), then runs every target of every committed
dashboard: each must parse and return at least one series or row.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from portal.db import engine as db_engine
from portal.db import migrate, timeseries
from portal.grafana import harness, kit, provisioning, sample_data
from portal.metrics.client import Prometheus
from portal.settings import Settings
from portal.stack import process
from tests.conftest import REPO, free_port, run_portal, shared_tmpdir

ROOT = REPO / "grafana-provisioning"
MODERN_PANELS = {"row", "timeseries", "stat", "table", "logs", "state-timeline", "bargauge"}
FIXED_UIDS = {kit.PROMETHEUS.uid, kit.POSTGRES.uid, kit.LOKI.uid, kit.ALERTMANAGER.uid}
RECORDED = re.compile(r"\b[a-z_]+:\w+:\w+\b")  # recording rule names: level:metric:operations


def _dashboards() -> dict[str, dict]:
    return provisioning.load_dashboards()


def _panels(model: dict) -> list[dict]:
    return list(harness._walk(model["panels"]))


def test_committed_provisioning_is_what_the_sources_generate() -> None:
    assert provisioning.stale() == [], "run `portal grafana build` and commit"
    result = run_portal("grafana", "build", "--check", check=True)
    assert "up to date" in result.stdout


def test_build_repairs_a_hand_edited_or_stray_file(tmp_path: Path) -> None:
    shutil.copytree(ROOT, tmp_path / "gp")
    root = tmp_path / "gp"
    (root / "dashboards" / "host.json").write_text("{}")
    (root / "dashboards" / "stray.json").write_text("{}")
    (root / "datasources" / "obsportal.yaml").unlink()
    expected = ["dashboards/host.json", "dashboards/stray.json", "datasources/obsportal.yaml"]
    assert provisioning.stale(root) == expected
    assert provisioning.write(root) == expected
    assert provisioning.stale(root) == []
    assert not (root / "dashboards" / "stray.json").exists()


def test_grafana_env_prints_what_the_provisioning_reads() -> None:
    url = "postgresql://reader:p%40ss%20word@db.example:6543/obs"
    out = run_portal("grafana", "env", env={"PORTAL_DATABASE_URL": url}, check=True).stdout
    lines = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    assert set(lines) == set(provisioning.ENV_VARS)
    assert lines["OBS_PG_ADDRESS"] == "db.example:6543"
    assert lines["OBS_PG_USER"] == "reader"
    assert lines["OBS_PG_PASSWORD"] == "'p@ss word'"


def test_named_dashboards_exist_with_unique_uids() -> None:
    dashboards = _dashboards()
    assert {
        "overview",
        "host",
        "realtime",
        "batch",
        "storage",
        "database",
        "logs",
        "logs-loki",
    } <= set(dashboards)
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids))
    host_vars = [v["name"] for v in dashboards["host"]["templating"]["list"]]
    assert host_vars == ["host"]


def test_datasources_have_fixed_uids_and_env_urls() -> None:
    doc = yaml.safe_load((ROOT / "datasources" / "obsportal.yaml").read_text())
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert set(by_uid) == FIXED_UIDS
    assert by_uid[kit.PROMETHEUS.uid]["url"] == "$PORTAL_PROMETHEUS_URL"
    assert by_uid[kit.ALERTMANAGER.uid]["url"] == "$PORTAL_ALERTMANAGER_URL"
    assert by_uid[kit.LOKI.uid]["url"] == "$PORTAL_LOKI_URL"
    pg = by_uid[kit.POSTGRES.uid]
    assert pg["jsonData"]["timescaledb"] is True
    assert pg["secureJsonData"]["password"] == "$OBS_PG_PASSWORD"
    text = (ROOT / "datasources" / "obsportal.yaml").read_text()
    for var in re.findall(r"\$(\w+)", text):
        assert var in provisioning.ENV_VARS, var


def test_every_reference_uses_a_provisioned_uid_and_no_import_inputs() -> None:
    for name, model in _dashboards().items():
        text = json.dumps(model)
        assert "${DS_" not in text and "__inputs" not in model, name
        for panel in _panels(model):
            refs = [panel.get("datasource")] + [
                t.get("datasource") for t in panel.get("targets", [])
            ]
            for ref in filter(None, refs):
                assert ref["uid"] in FIXED_UIDS, f"{name}/{panel['title']}: {ref}"
        for var in model.get("templating", {}).get("list", []):
            if var.get("datasource"):
                assert var["datasource"]["uid"] in FIXED_UIDS


def test_no_angular_panels_and_rate_interval_in_rates() -> None:
    for name, model in _dashboards().items():
        for panel in _panels(model):
            assert panel["type"] in MODERN_PANELS, f"{name}/{panel['title']}: {panel['type']}"
            for t in panel.get("targets", []):
                for fn, window in re.findall(
                    r"\b(rate|irate|increase)\(.*?\[([^\]]+)\]", t.get("expr", "")
                ):
                    allowed = {"$__rate_interval"} | ({"$__range"} if fn == "increase" else set())
                    assert window in allowed, f"{name}/{panel['title']}: {fn}[{window}]"


def test_promql_uses_only_contract_metric_names() -> None:
    contract = set(
        re.findall(r"`((?:obs|portal)_\w+)`", (REPO / "docs" / "metrics.md").read_text())
    )
    contract |= {"portal_write_rows_total", "up", "ALERTS"}
    exprs = [
        t["expr"]
        for m in _dashboards().values()
        for p in _panels(m)
        for t in p.get("targets", [])
        if "expr" in t and t["datasource"]["uid"] == kit.PROMETHEUS.uid
    ]
    rules = [
        r["expr"]
        for f in (REPO / "prometheus" / "rules").glob("*.yml")
        for g in yaml.safe_load(f.read_text())["groups"]
        for r in g["rules"]
    ]
    raw = [RECORDED.sub("", e) for e in exprs + rules]  # level:metric:operations names aside
    used = {n for e in raw for n in re.findall(r"\b((?:obs|portal)_\w+|up|ALERTS)\b", e)}
    assert used, "no metric names found"
    assert used <= contract, sorted(used - contract)


def test_recorded_series_in_panels_are_recorded_by_a_shipped_rule() -> None:
    recorded = {
        r["record"]
        for f in (REPO / "prometheus" / "rules").glob("*.yml")
        for g in yaml.safe_load(f.read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    used = {
        n
        for m in _dashboards().values()
        for p in _panels(m)
        for t in p.get("targets", [])
        for n in RECORDED.findall(t.get("expr", ""))
    }
    assert "host_beam:obs_l1_lag_seconds:max5m" in used  # the real-time panels read them
    assert used <= recorded, sorted(used - recorded)
    assert all(RECORDED.fullmatch(name) for name in recorded), sorted(recorded)


@dataclass
class Loaded:
    prom_url: str
    database_url: str
    start: datetime
    end: datetime


@pytest.fixture(scope="module")
def loaded(pg_server: str, cfg: Settings) -> Iterator[Loaded]:
    """A fresh database seeded by the simulator and a Prometheus over 6 h of its history, with
    the recorded series of the dashboards' rules over the same 6 h."""
    url = f"{pg_server}/obs_grafana_{uuid.uuid4().hex[:8]}"
    migrate.upgrade(url)
    tmp = shared_tmpdir("obsportal-grafana-")
    pid = None
    try:
        # two days: the history then always holds a closed day whose Hhat stacks are written
        # (with one, just after midnight UTC the day that closed is still being stacked)
        sample_data.seed_database(cfg.replace(database_url=url), days=2)
        end = datetime.now(UTC)
        start = end - timedelta(hours=6)
        sample_data.backfill_prometheus(tmp / "tsdb", start, end, 10, timedelta(hours=26))
        sample_data.backfill_recording_rules(tmp / "tsdb", start, end)
        port = free_port()
        pid = sample_data.serve_prometheus(tmp / "tsdb", port, tmp / "prometheus.log")
        yield Loaded(f"http://127.0.0.1:{port}", url, start, end)
    finally:
        if pid:
            assert process.stop(pid)
        db_engine.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)


def test_every_panel_query_returns_data(loaded: Loaded) -> None:
    report = harness.run_dashboards(
        _dashboards(), Prometheus(loaded.prom_url), loaded.database_url, loaded.start, loaded.end
    )
    print("\n".join(r.line() for r in report.results))
    print(report.summary())
    failed = [r.line() + "\n    " + r.expanded for r in report.results if not r.ok]
    assert not failed, "\n".join(failed)
    ran_kinds = {r.target.kind for r in report.ran}
    assert {"promql", "sql", "variable"} <= ran_kinds
    targets = harness.extract(_dashboards())
    assert len(targets) == len([r for r in report.results if r.target.kind != "variable"])
    skipped = [r for r in report.results if r.skipped]
    assert all(r.skipped.startswith(("LogQL", "text box")) for r in skipped)
    assert {r.target.dashboard for r in skipped if r.skipped.startswith("LogQL")} == {"logs-loki"}
    assert all(r.seconds > 0 for r in report.ran)
    promql = [r for r in report.ran if r.target.kind == "promql"]
    # Prometheus's own evaluation time, from its query statistics, within the whole round trip
    assert promql and all(0 < (r.server_seconds or 0) <= r.seconds for r in promql)
    # the expansion really happened: no Grafana placeholder reached a backend
    assert not [r.expanded for r in report.ran if "$" in r.expanded]


def test_backfilled_recorded_series_equal_their_rules_on_the_raw_history(loaded: Loaded) -> None:
    doc = yaml.safe_load((REPO / "prometheus" / "rules" / "dashboards.yml").read_text())
    rules = {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"]}
    middle = loaded.start + (loaded.end - loaded.start) / 2

    def at(expr: str, t: float) -> dict[tuple[str, str], str]:
        """An instant query at exactly ``t`` (a range query's client rounds to whole seconds)."""
        resp = httpx.get(f"{loaded.prom_url}/api/v1/query", params={"query": expr, "time": t})
        series = resp.json()["data"]["result"]
        return {(s["metric"]["host"], s["metric"]["beam"]): s["value"][1] for s in series}

    for name, expr in rules.items():
        # when the rule was evaluated: its sample's own time
        stamps = set(at(f"timestamp({name})", middle.timestamp()).values())
        assert len(stamps) == 1, (name, stamps)
        evaluated = float(stamps.pop())
        assert abs(evaluated - middle.timestamp()) <= 300, name  # the group interval
        recorded = at(name, evaluated)
        assert len(recorded) == 4, name  # the default sample cluster: 2 nodes x 2 beams
        raw = at(expr, evaluated)
        assert recorded == raw, (name, evaluated, at(f"timestamp({name})", evaluated))


def test_harness_reports_broken_queries_instead_of_raising(loaded: Loaded) -> None:
    bad = {
        "broken": {
            "panels": [
                {
                    "title": "bad promql",
                    "type": "timeseries",
                    "targets": [
                        {"refId": "A", "expr": "rate(x[", "datasource": kit.PROMETHEUS.to_json()}
                    ],
                },
                {
                    "title": "missing table",
                    "type": "table",
                    "datasource": kit.POSTGRES.to_json(),
                    "targets": [
                        {"refId": "A", "rawSql": "SELECT * FROM nope WHERE $__timeFilter(t)"}
                    ],
                },
                {
                    "title": "no data",
                    "type": "timeseries",
                    "targets": [
                        {
                            "refId": "A",
                            "expr": "obs_not_a_metric",
                            "datasource": kit.PROMETHEUS.to_json(),
                        }
                    ],
                },
            ]
        }
    }
    report = harness.run_dashboards(
        bad, Prometheus(loaded.prom_url), loaded.database_url, loaded.start, loaded.end
    )
    assert not report.ok
    by_panel = {r.target.panel: r for r in report.results}
    assert "rejected the query" in by_panel["bad promql"].error
    assert 'relation "nope" does not exist' in by_panel["missing table"].error
    assert "BETWEEN" in by_panel["missing table"].expanded
    assert by_panel["no data"].error == "" and by_panel["no data"].rows == 0
    assert "no series or rows returned" in by_panel["no data"].line()


def test_grafana_check_cli_against_configured_backends(loaded: Loaded) -> None:
    env = {"PORTAL_PROMETHEUS_URL": loaded.prom_url, "PORTAL_DATABASE_URL": loaded.database_url}
    ok = run_portal("grafana", "check", "--dashboard", "overview", "--dashboard", "batch", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "overview / Hosts up [A] promql  ok" in ok.stdout
    assert "0 failed" in ok.stdout
    bad = run_portal("grafana", "check", "--dashboard", "nope", env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("error: no dashboard nope")
    assert "Traceback" not in bad.stderr


def test_datasource_flag_and_harness_follow_the_database(
    loaded: Loaded, cfg: Settings, tmp_path: Path
) -> None:
    """The datasource Grafana gets and the harness's macro expansion agree with the database."""
    with db_engine.get_engine(loaded.database_url).connect() as conn:
        offers = timeseries.installed_backend(conn) == "timescaledb"
    assert provisioning.timescaledb_for(loaded.database_url) is offers
    env = {"PORTAL_DATABASE_URL": loaded.database_url}
    out = run_portal("grafana", "export", str(tmp_path / "gp"), env=env, check=True).stdout
    assert f"timescaledb={str(offers).lower()}" in out
    doc = yaml.safe_load((tmp_path / "gp" / "datasources" / "obsportal.yaml").read_text())
    (pg,) = [d for d in doc["datasources"] if d["uid"] == kit.POSTGRES.uid]
    assert pg["jsonData"]["timescaledb"] is offers
    shipped = yaml.safe_load((ROOT / "datasources" / "obsportal.yaml").read_text())
    (pg,) = [d for d in shipped["datasources"] if d["uid"] == kit.POSTGRES.uid]
    assert pg["jsonData"]["timescaledb"] is provisioning.SHIPPED_TIMESCALEDB  # documented default
    runner = harness.Runner(
        Prometheus(loaded.prom_url), loaded.database_url, loaded.start, loaded.end, 10.0
    )
    try:
        assert runner.timescaledb is offers
    finally:
        runner.close()
    report = harness.run_dashboards(
        {"logs": _dashboards()["logs"]},
        Prometheus(loaded.prom_url),
        loaded.database_url,
        loaded.start,
        loaded.end,
    )
    grouped = [r for r in report.ran if "$__timeGroup" in r.target.query]
    assert grouped and all(r.ok for r in grouped)
    assert all(("time_bucket(" in r.expanded) is offers for r in grouped)
