"""Canary for the Dash private names the portal relies on (all in portal/web/dash_compat.py)."""

from __future__ import annotations

import tomllib

import dash
from dash import Input, Output

from portal.web import dash_compat
from tests.conftest import REPO


def test_dash_private_names_are_still_there() -> None:
    problems = dash_compat.check()
    assert not problems, "a Dash upgrade changed what the portal uses:\n" + "\n".join(problems)


def test_global_callbacks_can_be_marked_read_and_dropped() -> None:
    mark = dash_compat.callback_mark()

    @dash.callback(Output("compat-canary-out", "children"), Input("compat-canary-in", "value"))
    def _echo(value: str) -> str:
        return value

    added = dash_compat.callbacks_since(mark)
    assert added == ["compat-canary-out.children"], (
        f"dash.callback no longer appends to dash._callback.GLOBAL_CALLBACK_LIST as expected "
        f"(saw {added}): update portal/web/dash_compat.py"
    )
    dash_compat.drop_since(mark)
    assert dash_compat.callbacks_since(mark) == []
    assert "compat-canary-out.children" not in dash_compat.callback_mark()[1], (
        "dash._callback.GLOBAL_CALLBACK_MAP kept a dropped callback"
    )


def test_dash_major_version_is_pinned() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "dash>=4,<5" in deps, deps
    assert dash.__version__.split(".")[0] == "4", dash.__version__
