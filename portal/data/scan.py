"""``portal data scan``: register what is on disk, checksums computed in parallel.

Files are taken in batches; each batch's names already in the catalog are skipped before any
checksum is computed, and each finished batch is registered at once, so a scan that is stopped
resumes where it was by running it again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from portal.data import catalog, producer
from portal.data import checksum as checksums
from portal.db.engine import connect_raw
from portal.errors import PortalError


@dataclass
class ScanResult:
    seen: int = 0
    registered: int = 0
    skipped: int = 0
    bytes_hashed: int = 0


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if not n.startswith("."):
                yield Path(folder) / n


def scan(
    url: str,
    root: Path,
    kind: str,
    kinds: Collection[str],
    site: str,
    *,
    prefix: str = "",
    jobs: int = 4,
    batch: int = 500,
    fields: dict[str, Any] | None = None,
    progress: Callable[[ScanResult], None] | None = None,
) -> ScanResult:
    """Register every file under ``root`` as a product of ``kind`` named ``prefix + relpath``."""
    root = root.resolve()
    if not root.exists():
        raise PortalError(f"{root} does not exist")
    if kind not in kinds:
        raise PortalError(f"kind {kind!r} is not one of {', '.join(sorted(kinds))}")
    base = root.parent if root.is_file() else root
    prefix = prefix if prefix else f"{kind}/"
    result = ScanResult()
    pending: list[Path] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:

        def flush() -> None:
            names = {str(p): prefix + p.relative_to(base).as_posix() for p in pending}
            with connect_raw(url, autocommit=True) as conn:
                known = {
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM data_products WHERE name = ANY(%s)",
                        (list(names.values()),),
                    )
                }
            todo = [p for p in pending if names[str(p)] not in known]
            result.skipped += len(pending) - len(todo)
            sums = list(pool.map(checksums.of_file, todo))
            rows = []
            for path, digest in zip(todo, sums, strict=True):
                st = path.stat()
                record = {
                    **(fields or {}),
                    "kind": kind,
                    "name": names[str(path)],
                    "path": str(path),
                    "size_bytes": st.st_size,
                    "checksum": digest,
                    "created_at": datetime.fromtimestamp(st.st_mtime, UTC),
                }
                rows.append(producer.product_row(record, kinds, site))
                result.bytes_hashed += st.st_size
            result.registered += catalog.store_products(url, rows)
            pending.clear()
            if progress:
                progress(result)

        for path in _files(root):
            result.seen += 1
            pending.append(path)
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    return result
