"""``docker/``: no Docker engine here, so check what can be checked without one.

The compose file parses, every bind-mounted, built or copied file exists, the portal
containers' environment is valid for ``portal.settings``, ports and URLs agree with the
settings' defaults, and promtool / amtool accept the configs it mounts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from portal import settings
from portal.grafana import provisioning
from portal.stack import configs
from tests.conftest import REPO

DOCKER = REPO / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
PORTAL_IMAGE = ("migrate", "portal", "maintenance", "collector")


def _defaults(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing exported: the default."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), str(value))


def _env(service: str) -> dict[str, str]:
    return {k: _defaults(v) for k, v in SERVICES[service]["environment"].items()}


def _published(service: str) -> dict[int, int]:
    """container port -> host port."""
    out = {}
    for spec in SERVICES[service].get("ports", []):
        parts = str(spec).split(":")
        out[int(parts[-1])] = int(parts[-2])
    return out


def test_compose_parses_with_every_production_service() -> None:
    want = {"timescaledb", "prometheus", "alertmanager", "loki", "grafana", "portal", "collector"}
    assert want <= set(SERVICES)
    assert "timescale/timescaledb" in SERVICES["timescaledb"]["image"]
    assert SERVICES["portal"]["command"] == ["portal", "web"]
    assert SERVICES["collector"]["command"] == ["portal", "collect", "host"]
    for name in PORTAL_IMAGE:
        assert SERVICES[name]["image"] == "obsportal:latest"
        assert SERVICES[name]["build"]["dockerfile"] == "docker/Dockerfile"


def test_every_mounted_and_built_file_exists() -> None:
    named = set(COMPOSE.get("volumes", {}))
    checked = set()
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            source = str(vol).split(":")[0]
            if source in named:
                continue
            assert source.startswith("."), f"{name}: {vol} is neither named nor relative"
            assert (DOCKER / source).exists(), f"{name}: {source} does not exist"
            checked.add(source)
        if "build" in svc:
            context = DOCKER / svc["build"]["context"]
            assert (context / svc["build"]["dockerfile"]).is_file()
    assert checked == {
        "./prometheus.yml",
        "../prometheus/rules",
        "./alertmanager.yml",
        "./loki.yaml",
        "../grafana-provisioning",
    }
    for used in {v for svc in SERVICES.values() for v in svc.get("volumes", [])}:
        source = str(used).split(":")[0]
        if not source.startswith("."):
            assert source in named, f"volume {source} is not declared"


def test_dockerfile_copies_only_existing_paths() -> None:
    context = DOCKER / SERVICES["portal"]["build"]["context"]
    text = (DOCKER / "Dockerfile").read_text()
    copies = re.findall(r"^COPY\s+(?!--from=)(.+?)\s+\S+$", text, re.M)
    sources = [s for line in copies for s in line.split()]
    assert "portal" in sources and "pyproject.toml" in sources
    for src in sources:
        assert (context / src).exists(), src


def test_image_installs_the_wheel_not_the_checkout() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert "pip wheel" in text and "pip install /dist/*.whl" in text
    assert "pip install -e" not in text


@pytest.mark.parametrize("service", PORTAL_IMAGE)
def test_portal_environment_is_valid_settings(service: str) -> None:
    env = _env(service)
    cfg = settings.load(env)  # unknown or malformed PORTAL_* would raise here
    assert cfg.database_url.endswith("@timescaledb:5432/obsportal")
    assert cfg.web_port == settings.load({}).web_port


def test_ports_and_urls_agree_with_settings_defaults() -> None:
    defaults = settings.load({"PORTAL_LOKI_URL": "http://127.0.0.1:3100"})
    cfg = settings.load(_env("portal"))
    pairs = {
        "prometheus": (cfg.prometheus_url, defaults.prometheus_url),
        "pushgateway": (cfg.pushgateway_url, defaults.pushgateway_url),
        "alertmanager": (cfg.alertmanager_url, defaults.alertmanager_url),
        "loki": (cfg.loki_url, defaults.loki_url),
        "timescaledb": (cfg.database_url, defaults.database_url),
    }
    for service, (url, default) in pairs.items():
        inside, local = urlsplit(url), urlsplit(default)
        assert inside.hostname == service, f"{service}: {url}"
        assert inside.port == local.port, f"{service}: {url} vs default {default}"
        assert _published(service) == {local.port: local.port}, service
    assert _published("portal") == {defaults.web_port: defaults.web_port}
    assert _published("collector") == {defaults.collector_port: defaults.collector_port}
    assert defaults.grafana_url == ""  # no links by default; compose sets Grafana's address
    assert urlsplit(cfg.grafana_url).port in _published("grafana")


def test_grafana_gets_every_provisioning_variable() -> None:
    env = _env("grafana")
    assert set(provisioning.ENV_VARS) <= set(env)
    portal = settings.load(_env("portal"))
    assert env["PORTAL_PROMETHEUS_URL"] == portal.prometheus_url
    assert env["PORTAL_ALERTMANAGER_URL"] == portal.alertmanager_url
    assert env["PORTAL_LOKI_URL"] == portal.loki_url
    db = urlsplit(portal.database_url)
    assert env["OBS_PG_ADDRESS"] == f"{db.hostname}:{db.port}"
    assert env["OBS_PG_PASSWORD"] == db.password
    assert env["OBS_PORTAL_URL"] == f"http://portal:{portal.web_port}"
    mounts = SERVICES["grafana"]["volumes"]
    assert f"../grafana-provisioning:{provisioning.MOUNT}:ro" in mounts


def test_prometheus_and_alertmanager_configs_match_the_local_stack(cfg) -> None:
    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    local = configs.prometheus_config(cfg)
    assert {j["job_name"] for j in prom["scrape_configs"]} == {
        j["job_name"] for j in local["scrape_configs"]
    }
    assert prom["global"]["scrape_interval"] == local["global"]["scrape_interval"]
    ds = {d["type"]: d for d in provisioning.datasources()["datasources"]}
    assert ds["prometheus"]["jsonData"]["timeInterval"] == prom["global"]["scrape_interval"]
    mounted = dict(str(v).split(":")[:2] for v in SERVICES["prometheus"]["volumes"])
    assert prom["rule_files"] == [mounted["../prometheus/rules"] + "/*.yml"]
    am = yaml.safe_load((DOCKER / "alertmanager.yml").read_text())
    local_am = configs.alertmanager_config(cfg)
    assert am["route"] == local_am["route"]
    (hook,) = am["receivers"][0]["webhook_configs"]
    assert hook["url"] == f"http://portal:{settings.load({}).web_port}/api/alerts"


@pytest.mark.parametrize(
    ("tool", "args", "path"),
    [
        ("promtool", ["check", "config", "--syntax-only"], "prometheus.yml"),
        ("amtool", ["check-config"], "alertmanager.yml"),
    ],
)
def test_tools_accept_the_mounted_configs(tool: str, args: list[str], path: str) -> None:
    binary = shutil.which(tool)
    assert binary, f"{tool} is not installed (Debian package prometheus / prometheus-alertmanager)"
    proc = subprocess.run([binary, *args, str(DOCKER / path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_loki_config_parses_and_keeps_logs_as_long_as_the_portal() -> None:
    loki = yaml.safe_load(Path(DOCKER / "loki.yaml").read_text())
    assert loki["server"]["http_listen_port"] == 3100
    hours = int(loki["limits_config"]["retention_period"].rstrip("h"))
    assert hours == 24 * settings.load({}).logs_retention_days
