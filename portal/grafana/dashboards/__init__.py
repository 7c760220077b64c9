"""Dashboard sources (grafana-foundation-sdk, a dev dependency): one module per dashboard.

Each module lists what it builds in ``DASHBOARDS`` (file stem -> builder); ``generate`` finds
them all, so adding a dashboard is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from portal.grafana import kit


def generate() -> dict[str, dict[str, Any]]:
    """Every dashboard of this package as provisioning JSON, by file stem."""
    out: dict[str, dict[str, Any]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, build in module.DASHBOARDS.items():
            out[name] = kit.render(build())
    return out
