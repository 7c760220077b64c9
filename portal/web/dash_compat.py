"""The only place the portal touches Dash's private names (pinned: ``dash>=4,<5``).

Everything else uses public API (``dash.register_page``, ``dash.page_registry``,
``app.callback``). Two things have no public equivalent, both about callbacks registered with
the global ``@dash.callback`` decorator at import time (how many quicklook and built-in page
files add interactivity):

- ``dash._callback.GLOBAL_CALLBACK_LIST`` / ``GLOBAL_CALLBACK_MAP``: the specs ``@callback``
  appends before any app exists. The loader reads them to refuse a file whose callback output
  another page already uses, and truncates them to drop the callbacks of a file whose import
  failed (otherwise a broken plugin would leave half-registered callbacks behind).
- The same two, plus ``GLOBAL_INLINE_SCRIPTS`` (clientside callbacks), are cleared when a
  process builds a fresh app (the tests build several): Dash copies them into the first app it
  serves and would otherwise carry one app's callbacks into the next.

``tests/test_dash_compat.py`` fails with the attribute's name when a Dash upgrade removes or
changes any of these; adapt this module, nothing else.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import _callback

#: (attribute of ``dash._callback``, expected type): what this module relies on.
REQUIRED: tuple[tuple[str, type], ...] = (
    ("GLOBAL_CALLBACK_LIST", list),
    ("GLOBAL_CALLBACK_MAP", dict),
    ("GLOBAL_INLINE_SCRIPTS", list),
)


def _list() -> list[dict[str, Any]]:
    return _callback.GLOBAL_CALLBACK_LIST


def _map() -> dict[str, Any]:
    return _callback.GLOBAL_CALLBACK_MAP


def check() -> list[str]:
    """Problems with the private names above in the installed Dash (empty: all is well)."""
    problems = []
    for name, kind in REQUIRED:
        value = getattr(_callback, name, None)
        if not isinstance(value, kind):
            problems.append(
                f"dash._callback.{name} is {type(value).__name__}, expected {kind.__name__} "
                f"(Dash {dash.__version__}): update portal/web/dash_compat.py"
            )
    return problems


def callback_mark() -> tuple[int, frozenset[str]]:
    """Where the global callback list stands now: pass to ``callbacks_since`` / ``drop_since``."""
    return len(_list()), frozenset(_map())


def callbacks_since(mark: tuple[int, frozenset[str]]) -> list[str]:
    """Output ids of the global callbacks registered after ``mark``."""
    return [str(spec["output"]) for spec in _list()[mark[0] :]]


def drop_since(mark: tuple[int, frozenset[str]]) -> None:
    """Forget the global callbacks registered after ``mark`` (a file that failed to import)."""
    n_before, known = mark
    for spec in _list()[n_before:]:
        if spec["output"] not in known:
            _map().pop(spec["output"], None)
    del _list()[n_before:]


def reset_globals() -> None:
    """Forget the pages and global callbacks of a previous app built in this process."""
    dash.page_registry.clear()  # public: the same dict Dash pages reads
    _list().clear()
    _map().clear()
    _callback.GLOBAL_INLINE_SCRIPTS.clear()
