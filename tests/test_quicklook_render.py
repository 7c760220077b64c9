"""In-process checks of what quicklooks get without Dash: return values, controls, read-only SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
import plotly.graph_objects as go
import pytest
from dash import dash_table, dcc

from portal import quicklook as ql
from portal.errors import PortalError
from portal.web import controls, render

PART = render.Part("portal_quicklooks_x", "x", Path("/q/x.py"), ())


def test_return_values_become_components() -> None:
    graph = render.render(go.Figure(), PART).children
    assert isinstance(graph, dcc.Graph)
    assert isinstance(render.render("**hi**", PART).children, dcc.Markdown)
    big = pd.DataFrame({"n": range(render.MAX_TABLE_ROWS + 5)})
    box = render.render(big, PART).children
    grid = box.children[0]
    assert isinstance(grid, dash_table.DataTable) and grid.sort_action == "native"
    assert len(grid.data) == render.MAX_TABLE_ROWS and "10,005 rows" in str(box.children[1])
    odd = render.render(object(), PART).children
    assert "the portal shows" in str(odd)  # one-line notice, not a crash


def test_signature_parameters_become_controls_and_typed_values() -> None:
    def layout(
        time_range: ql.TimeRange,
        beam: int = 0,
        mode: Literal["fast", "full"] = "fast",
        since: datetime | None = None,
        who: str = "",
        **params: object,
    ) -> None: ...

    found = {p.name: p.kind for p in controls.params_of(layout)}
    assert found == {"beam": "int", "mode": "choice", "since": "datetime", "who": "str"}
    assert controls.coerce("mode", "full", Literal["fast", "full"]) == "full"
    with pytest.raises(PortalError, match="mode='slow' is not one of fast, full"):
        controls.coerce("mode", "slow", Literal["fast", "full"])
    when = controls.coerce("since", "2026-03-01T12:00", datetime | None)
    assert when == datetime(2026, 3, 1, 12, tzinfo=UTC)
    row = controls.controls(layout, {"beam": "5", "mode": "full"})
    assert row is not None
    values = {c.children[1].id["name"]: c.children[1].value for c in row.children}
    assert values == {"beam": 5, "mode": "full", "since": "", "who": ""}
    assert controls.as_text("bool", ["on"]) == "true" and controls.as_text("int", 3.0) == "3"
    assert controls.as_text("int", None) is None  # cleared: back to the default


def test_sql_cannot_write_and_runs_one_statement(
    cfg: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cfg`` points ql.sql at this run's database."""
    with pytest.raises(PortalError, match=r"^read-only: .*INSERT"):
        ql.sql("INSERT INTO events (topic, payload, source) VALUES ('x', '{}', 'x')")
    with pytest.raises(PortalError, match="one statement per call"):
        ql.sql("COMMIT; DELETE FROM events")
    assert ql.sql("SHOW transaction_read_only")["transaction_read_only"][0] == "on"
    monkeypatch.setattr(ql, "SQL_TIMEOUT_S", 1)
    with pytest.raises(PortalError, match="longer than 1 s and was cancelled"):
        ql.sql("SELECT pg_sleep(3)")


def test_error_card_shows_the_traceback_to_admins_only(caplog: pytest.LogCaptureFixture) -> None:
    """Everyone else gets one line with the request id; the log has the traceback under it."""
    import flask

    from portal.auth.identity import Identity

    try:
        raise ValueError("internal detail")
    except ValueError as exc:
        err = exc
    app = flask.Flask("error_card_test")
    for role, shown in (("viewer", False), ("operator", False), ("admin", True)):
        with app.test_request_context():
            flask.g.portal_identity = Identity("someone", "user", role, "", "rid0042")
            text = repr(ql.error_card("probe.py: layout() failed", err))
        assert "probe.py: layout() failed" in text
        assert ("Traceback" in text) is shown and ("internal detail" in text) is shown, role
        assert shown or "request id rid0042" in text
    assert "(request rid0042)" in caplog.text and "internal detail" in caplog.text
