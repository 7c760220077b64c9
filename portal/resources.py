"""Files shipped with the package (Grafana provisioning, Prometheus rules, built-in quicklooks).

Read through ``importlib.resources``, so they resolve inside an installed wheel as well as in a
checkout, where ``portal/package_data/`` links to the top-level folders of the same names.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped(name: str) -> Path:
    """The shipped folder ``name`` (``grafana-provisioning``, ``prometheus``, ``quicklooks``)."""
    path = Path(str(files("portal") / "package_data" / name))
    return path.resolve()
