"""The Grafana capability: ``portal grafana``, the built-in dashboards and their recording rules.

The built-in dashboards are the JSON files generated from ``portal/grafana/dashboards/`` and
shipped in the package, so registering them needs no dashboard SDK at run time. The recording
rules (``prometheus/rules/dashboards.yml``) pre-aggregate the per-beam series their panels read.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import click

from portal.hookspecs import Dashboard, hookimpl
from portal.lazy import LazyCommand
from portal.resources import shipped


def _read(path: Path) -> dict[str, Any]:
    model: dict[str, Any] = json.loads(path.read_text())
    return model


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(
        LazyCommand(
            "grafana",
            "portal.grafana.cli:grafana",
            "Grafana provisioning as code (dashboards, datasources, alerting).",
        )
    )


@hookimpl
def register_dashboards() -> list[Dashboard]:
    folder = shipped("grafana-provisioning") / "dashboards"
    return [Dashboard(p.stem, partial(_read, p)) for p in sorted(folder.glob("*.json"))]


@hookimpl
def prometheus_rule_files() -> list[Path]:
    return [shipped("prometheus") / "rules" / "dashboards.yml"]
