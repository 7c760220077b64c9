"""Where pages come from: every plugin's ``register_pages`` and ``quicklook_folders``."""

from __future__ import annotations

from pathlib import Path

from portal import plugins
from portal.settings import Settings


def page_files(cfg: Settings) -> list[Path]:
    """Page files in plugin order; a folder stands for its ``*.py`` files (not ``_*``)."""
    files: list[Path] = []
    for entry in plugins.get(cfg).results("register_pages"):
        path = Path(entry)
        if path.is_dir():
            files.extend(p for p in sorted(path.glob("*.py")) if not p.name.startswith("_"))
        else:
            files.append(path)
    return files


def quicklook_folders(cfg: Settings) -> list[Path]:
    """Quicklook folders in plugin order, each once (the watcher and the loader use these)."""
    seen: dict[Path, None] = {}
    for entry in plugins.get(cfg).results("quicklook_folders", settings=cfg):
        seen.setdefault(Path(entry).resolve(), None)
    return list(seen)
