"""Helpers of the data tests: product files, sites on the session's real sshd, settings."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from portal.data import checksum, sites
from portal.data.kinds import BUILTIN
from portal.data.producer import product_row
from portal.settings import Settings

KINDS = {k.name for k in BUILTIN}


def tag() -> str:
    return uuid.uuid4().hex[:10]


def with_data(cfg: Settings, **values: Any) -> Settings:
    """``cfg`` with data settings replaced (``PORTAL_DATA_<NAME>=value``, parsed values)."""
    extra = dict(cfg.extra)
    extra.update({f"PORTAL_DATA_{k.upper()}": v for k, v in values.items()})
    return cfg.replace(extra=extra)


def make_files(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = folder / f"f{i:04d}.dat"
        path.write_bytes(os.urandom(size))
        out.append(path)
    return out


def product_records(
    files: list[Path], kind: str, prefix: str, meta: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "kind": kind,
            "name": f"{prefix}/{f.name}",
            "path": str(f),
            "size_bytes": f.stat().st_size,
            "checksum": checksum.of_file(f),
            "metadata": meta or {},
        }
        for f in files
    ]


def rows(records: list[dict[str, Any]], site: str = "local") -> list[tuple[Any, ...]]:
    return [product_row(r, KINDS, site) for r in records]


def ssh_site(
    cfg: Settings, sshd: Any, root: Path, name: str, *, port: int | None = None, **kw: Any
) -> sites.Site:
    """A site reached over the session's real sshd (``port``: another, e.g. a dead one)."""
    site = sites.Site(
        name,
        f"ssh://{sshd.user}@127.0.0.1:{port or sshd.port}{root}",
        options={"identity_file": str(sshd.key), "known_hosts": str(sshd.known_hosts)},
        **kw,
    )
    sites.save(cfg.database_url, site)
    return site
