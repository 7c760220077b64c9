"""Loads the plugins: built-in and installed ones (entry-point group ``obsportal``) and one-file
plugins from ``PORTAL_PLUGINS_DIR``.

A plugin that fails to import is recorded with its name and error instead of stopping the
portal: the CLI prints one line about it and the web app shows an error card.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from portal import hookspecs

log = logging.getLogger("portal.plugins")
GROUP = hookspecs.PROJECT
#: The distribution whose entry points are the built-in capabilities.
BUILTIN_DIST = "obsportal"


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from and what it implements (``portal plugins`` prints these)."""

    name: str
    source: str  # "built-in", "<dist> <version>", or the file of a one-file plugin
    module: str
    hooks: tuple[str, ...] = ()
    error: str = ""  # one line when the plugin could not be loaded


class Plugins:
    """The plugin manager plus the record of what loaded and what failed."""

    def __init__(self, plugins_dir: Path | None = None) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self._load_entry_points()
        if plugins_dir is not None:
            self._load_dir(plugins_dir)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    @property
    def failed(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.error]

    def _register(self, module: ModuleType, name: str, source: str) -> None:
        try:
            self.pm.register(module, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            self._fail(name, source, module.__name__, exc)
            return
        hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(module) or ()))
        self.infos.append(PluginInfo(name, source, module.__name__, hooks))

    def _fail(
        self, name: str, source: str, module: str, exc: BaseException, hook: str = ""
    ) -> None:
        first = (str(exc).strip().splitlines() or [""])[0]
        error = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        error = f"{hook} raised {error}" if hook else error
        # the CLI and the web app report it in one line; the traceback is for PORTAL_LOG_LEVEL=DEBUG
        log.debug("plugin %s (%s) failed: %s", name, source, error, exc_info=exc)
        if any(i.name == name and i.error == error for i in self.infos):
            return  # the same failure on a repeated hook call
        self.infos.append(PluginInfo(name, source, module, error=error))

    def _load_entry_points(self) -> None:
        eps = sorted(
            entry_points(group=GROUP),
            key=lambda ep: (ep.dist is None or ep.dist.name != BUILTIN_DIST, ep.name),
        )
        for ep in eps:
            dist = ep.dist
            builtin = dist is not None and dist.name == BUILTIN_DIST
            source = "built-in" if builtin else f"{dist.name} {dist.version}" if dist else "?"
            name = ep.name if builtin else f"{dist.name if dist else '?'}:{ep.name}"
            if self.pm.has_plugin(name):
                continue  # the same distribution seen twice on sys.path
            try:
                module = ep.load()
            except BaseException as exc:  # noqa: BLE001 - a broken plugin must not stop the portal
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._fail(name, source, ep.value, exc)
                continue
            self._register(module, name, source)

    def _load_dir(self, folder: Path) -> None:
        """Every ``*.py`` file (not starting with ``_``) in ``folder`` is one plugin."""
        if not folder.is_dir():
            return
        for file in sorted(folder.glob("*.py")):
            if file.name.startswith("_"):
                continue
            name = f"file:{file.stem}"
            module_name = f"obsportal_plugin_{file.stem}"
            try:
                spec = importlib.util.spec_from_file_location(module_name, file)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot import {file}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except BaseException as exc:  # noqa: BLE001 - isolated like an entry point
                if isinstance(exc, KeyboardInterrupt):
                    raise
                sys.modules.pop(module_name, None)
                self._fail(name, str(file), module_name, exc)
                continue
            self._register(module, name, str(file))

    def results(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Every plugin's answer to ``hook_name``, flattened, in load order.

        Each implementation runs on its own: one that raises is recorded as that plugin's
        error and the others still answer.
        """
        out: list[Any] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                answer = impl.function(*(kwargs[name] for name in impl.argnames))
            except Exception as exc:  # noqa: BLE001 - isolate a plugin's bug like an import error
                module = getattr(impl.plugin, "__name__", "?")
                source = self.source_of(impl.plugin_name)
                self._fail(impl.plugin_name, source, module, exc, hook=hook_name)
                continue
            if isinstance(answer, list | tuple):
                out.extend(answer)
            elif answer is not None:
                out.append(answer)
        return out

    def source_of(self, name: str) -> str:
        return next((i.source for i in self.infos if i.name == name), "?")


@lru_cache(maxsize=8)
def _manager(plugins_dir: Path | None) -> Plugins:
    return Plugins(plugins_dir)


def manager(plugins_dir: Path | None = None) -> Plugins:
    """The process's plugins, loaded once per plugin folder."""
    return _manager(plugins_dir)


def get(settings: Any) -> Plugins:
    """The plugins for these settings (their ``plugins_dir``)."""
    return manager(settings.plugins_dir)


def reset() -> None:
    """Forget loaded plugins (tests that install or remove one)."""
    _manager.cache_clear()
    importlib.invalidate_caches()


def describe(infos: Iterable[PluginInfo]) -> str:
    """One line per plugin: name, source, hooks or error (``portal plugins``)."""
    lines = []
    for info in infos:
        what = f"error: {info.error}" if info.error else ", ".join(info.hooks) or "no hooks"
        lines.append(f"{info.name:24} {info.source:28} {what}")
    return "\n".join(lines)
