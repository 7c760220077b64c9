"""One module per dashboard; ``ALL`` maps the generated file name to its builder function."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders.dashboard import Dashboard

from portal.grafana.dashboards import (
    batch,
    database,
    host,
    logs,
    overview,
    realtime,
    storage,
)

ALL: dict[str, Callable[[], Dashboard]] = {
    "overview": overview.build,
    "host": host.build,
    "realtime": realtime.build,
    "batch": batch.build,
    "storage": storage.build,
    "database": database.build,
    "logs": logs.build,
    "logs-loki": logs.build_loki,
}
