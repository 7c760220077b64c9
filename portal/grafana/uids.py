"""Fixed datasource uids: dashboards reference these, never ``${DS_...}`` inputs.

Plain data, so provisioning and the panel-query harness run without the dashboard SDK.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ref:
    """A datasource reference, with the attribute names of the SDK's ``DataSourceRef``."""

    type_val: str
    uid: str


PROMETHEUS = Ref("prometheus", "obs-prometheus")
POSTGRES = Ref("grafana-postgresql-datasource", "obs-postgres")
LOKI = Ref("loki", "obs-loki")
ALERTMANAGER = Ref("alertmanager", "obs-alertmanager")
