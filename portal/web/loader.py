"""One page mechanism for built-in pages and quicklook plugins: one ``.py`` file = one page.

A file is imported in isolation; whatever goes wrong (syntax error, exception on import or in
``layout``) becomes an error card on that page only, and the portal log names the file.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl

import dash
from dash import html

from portal import quicklook as ql
from portal.errors import PortalError
from portal.web import controls, dash_compat, render

log = logging.getLogger("portal.web.loader")

QUICKLOOK_PREFIX = "/quicklooks/"
#: Query parameters the shared time-range picker owns.
RANGE_KEYS = ("range", "from", "to")


@dataclass
class Page:
    """A registered page and where it came from (for the navigation and error attribution)."""

    name: str
    file: Path
    section: str  # "builtin" | "quicklooks"
    title: str
    path: str
    order: int = 100
    template: str | None = None  # e.g. /hosts/<name>: reached by links, not the navigation
    key: str = ""  # its key in dash.page_registry (a module name)
    error: str = ""  # one line when the file could not be loaded
    module: ModuleType | None = field(default=None, repr=False)


def plugin_files(folders: Iterable[Path]) -> list[Path]:
    """Every ``.py`` file (not starting with ``_``) directly in each folder, sorted by name."""
    files: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            files.extend(p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_"))
    return files


def _slug(stem: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-") or "page"


def _import(file: Path, module_name: str) -> ModuleType:
    """Import ``file`` as a fresh module; on failure drop any callbacks it registered."""
    mark = dash_compat.callback_mark()
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
        clash = [out for out in dash_compat.callbacks_since(mark) if out in mark[1]]
        if clash:
            raise PortalError(f"callback output {clash[0]} is already used by another page")
    except BaseException:
        dash_compat.drop_since(mark)
        sys.modules.pop(module_name, None)
        raise
    return module


def call_layout(fn: Callable[..., Any], query: dict[str, Any]) -> Any:
    """Call a page's ``layout`` with typed URL parameters and the shared time range."""
    query = dict(query)
    tr = ql.TimeRange.parse(*(query.pop(k, None) for k in RANGE_KEYS))
    sig = inspect.signature(fn)
    hints = controls.hints_of(fn)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    kwargs: dict[str, Any] = {}
    for key, raw in query.items():
        param = sig.parameters.get(key)
        if param is None and not takes_any:
            continue  # unknown parameters (e.g. from an old link) are ignored
        default = param.default if param is not None else None
        inferred = type(default) if default not in (None, inspect.Parameter.empty) else None
        kwargs[key] = controls.coerce(key, raw, hints.get(key, inferred or inspect.Parameter.empty))
    if "time_range" in sig.parameters or takes_any:
        kwargs["time_range"] = tr
    return fn(**kwargs)


def _wrap(page: Page, fn: Callable[..., Any] | None) -> Callable[..., Any]:
    """The layout Dash calls: heading, callback-error slot, and the page body or its failure."""

    def layout(**query: Any) -> html.Div:
        log.debug("page %s: layout(%s)", page.name, query)
        row = None
        if fn is None:
            body: Any = ql.notice(page.error, kind="error")
        else:
            # a page with inputs of its own sets CONTROLS = False (its URL parameters still work)
            if getattr(page.module, "CONTROLS", True):
                row = controls.controls(fn, query)
            try:
                result = call_layout(fn, query)
                body = render.render(result, render.Part(page.key, page.name, page.file, ()))
            except PortalError as err:
                body = ql.unavailable(err)
            except Exception as exc:  # noqa: BLE001 - a broken page must not break the portal
                log.error("page %s (%s): layout failed", page.name, page.file)
                body = ql.error_card(f"{page.file.name}: layout() failed", exc)
        return html.Div(
            [
                html.H2(page.title, className="portal-page-title"),
                html.Div(id="portal-callback-error"),
                row,
                body,
            ],
            className="portal-page",
            **{"data-page": page.name},  # type: ignore[arg-type]
        )

    return layout


def _broken(page: Page, exc: BaseException) -> Callable[..., Any]:
    def layout(**_query: Any) -> html.Div:
        card = ql.error_card(f"{page.file.name} could not be loaded", exc)  # per visitor's role
        return html.Div(
            [html.H2(page.title, className="portal-page-title"), card],
            className="portal-page",
            **{"data-page": page.name},  # type: ignore[arg-type]
        )

    return layout


def load(file: Path, section: str, taken: set[str]) -> Page:
    """Import one page file and register it with Dash pages (never raises for a bad file)."""
    name = _slug(file.stem)
    default_path = f"/{name}" if section == "builtin" else f"{QUICKLOOK_PREFIX}{name}"
    if section != "builtin" and default_path in taken:
        # The same file name in another folder: both stay reachable, this one under its
        # folder's name (/quicklooks/<folder>-<name>); the Quicklooks page lists the clash.
        name = _distinct(f"{_slug(file.parent.name)}-{name}", taken)
        default_path = f"{QUICKLOOK_PREFIX}{name}"
        log.warning("quicklook %s: its name is taken, so it is at %s", file, default_path)
    module_name = f"portal_{section}_{name}".replace("-", "_")
    page = Page(name=name, file=file, section=section, title=file.stem, path=default_path)
    page.key = module_name
    if default_path in taken:
        exc: BaseException = PortalError(f"another page already uses {default_path}")
        page.error = f"{file}: {exc}"
        log.error("page %s: %s", file, exc)
        return page  # not registered: the first file with this name keeps the path
    template = None
    fn = None
    try:
        module = _import(file, module_name)
        page.module = module
        page.title = str(getattr(module, "TITLE", None) or getattr(module, "title", file.stem))
        page.order = int(getattr(module, "ORDER", 100))
        page.path = str(getattr(module, "PATH", default_path))
        template = page.template = getattr(module, "PATH_TEMPLATE", None)
        fn = getattr(module, "layout", None)
        if not callable(fn):
            raise PortalError(f"{file.name} defines no layout(**params) function")
        layout = _wrap(page, fn)
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, SystemExit, ... all isolated
        if isinstance(exc, KeyboardInterrupt):
            raise
        page.error = f"{file}: {type(exc).__name__}: {exc}"
        log.error("page %s could not be loaded", file, exc_info=exc)
        layout = _broken(page, exc)
    taken.add(page.path)
    dash.register_page(
        module_name,
        path=page.path,
        path_template=template,
        name=page.title,
        title=f"{page.title} · obsportal",
        order=page.order,
        layout=layout,
        section=section,
        file=str(file),
        error=page.error,
        portal_layout=fn if not page.error else None,  # for call_page (zoom of a part)
    )
    return page


def _distinct(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``, ... : the first whose quicklook path is free."""
    candidate, n = name, 1
    while f"{QUICKLOOK_PREFIX}{candidate}" in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def call_page(key: str, search: str | None) -> Any:
    """Call the ``layout`` of the page registered as ``key`` with the URL query ``search``."""
    fn = (dash.page_registry.get(key) or {}).get("portal_layout")
    if fn is None:
        raise PortalError(f"page {key} is not loaded in this worker")
    return call_layout(fn, dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=True)))


def load_all(page_files: Sequence[Path], quicklook_folders: Sequence[Path]) -> list[Page]:
    """Pages first (they own their paths), then every quicklook file of each folder in order."""
    taken: set[str] = set()
    pages = [load(f, "builtin", taken) for f in page_files]
    pages += [load(f, "quicklooks", taken) for f in plugin_files(quicklook_folders)]
    return pages


def file_of(exc: BaseException, pages: Iterable[Page]) -> Path | None:
    """The page file in ``exc``'s traceback (deepest frame wins), to name it in the log."""
    files = {str(p.file): p.file for p in pages}
    found = None
    tb = exc.__traceback__
    while tb is not None:
        found = files.get(tb.tb_frame.f_code.co_filename, found)
        tb = tb.tb_next
    return found
