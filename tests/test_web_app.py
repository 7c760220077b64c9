"""Fast in-process checks of the portal's pieces: time range, typed parameters, health, watcher."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from portal import quicklook as ql
from portal.errors import PortalError
from portal.settings import Settings
from portal.web import loader, server
from tests.conftest import free_port, shared_tmpdir


def test_time_range_relative_custom_and_bad_values() -> None:
    six = ql.TimeRange.parse("6h")
    assert six.label == "6h" and round(six.seconds) == 6 * 3600
    custom = ql.TimeRange.parse("custom", "2026-03-01T12:00", "2026-03-02T12:00")
    assert custom.start == datetime(2026, 3, 1, 12, tzinfo=UTC) and custom.seconds == 86400
    assert custom.query() == "range=custom&from=2026-03-01T12:00&to=2026-03-02T12:00"
    assert ql.TimeRange.from_store({"range": "7d"}).label == "7d"
    for args in (("2w",), ("custom", "2026-03-02", "2026-03-01"), ("custom", "yesterday")):
        with pytest.raises(PortalError) as err:
            ql.TimeRange.parse(*args)
        assert "\n" not in str(err.value)


def test_layout_gets_typed_url_parameters_and_the_time_range() -> None:
    seen: dict[str, object] = {}

    def layout(time_range: ql.TimeRange, beam: int = 0, dm: float = 0.0, live: bool = False):
        seen.update(time_range=time_range, beam=beam, dm=dm, live=live)
        return "ok"

    query = {"beam": "3", "dm": "56.7", "live": "true", "range": "24h", "junk": "x"}
    assert loader.call_layout(layout, query) == "ok"
    assert seen["beam"] == 3 and seen["dm"] == 56.7 and seen["live"] is True
    assert isinstance(seen["time_range"], ql.TimeRange) and seen["time_range"].label == "24h"
    with pytest.raises(PortalError, match="beam='x' is not a valid int"):
        loader.call_layout(layout, {"beam": "x"})


def test_healthz_names_every_backend_and_stays_200_when_degraded(
    cfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal import settings
    from portal.web.app import create_app

    dead = {f"PORTAL_{k}_URL": f"http://127.0.0.1:{free_port()}" for k in ("PROMETHEUS",)}
    for key, value in dead.items():
        monkeypatch.setenv(key, value)
    settings.get.cache_clear()
    try:
        app = create_app(settings.get())
        body = app.test_client().get("/healthz")
        assert body.status_code == 200
        data = body.get_json()
        assert data["status"] == "degraded"
        assert data["backends"]["database"]["ok"] is True
        assert data["backends"]["prometheus"]["ok"] is False
        assert app.test_client().get("/metrics").status_code == 200
    finally:
        settings.get.cache_clear()


def test_watcher_reports_new_edited_and_removed_plugins() -> None:
    folder = shared_tmpdir("portal-watch-")
    changes: list[list[str]] = []
    stop = threading.Event()
    got = threading.Semaphore(0)

    def on_change(files: list[str]) -> None:
        changes.append(files)
        got.release()

    start = server.snapshot([folder])  # taken here: no race with the first write below
    thread = threading.Thread(
        target=server.watch, args=([folder], on_change, stop, start), daemon=True
    )
    thread.start()
    try:
        plugin = folder / "look.py"
        plugin.write_text("TITLE = 'a'\n")
        assert got.acquire(timeout=30)
        plugin.write_text("TITLE = 'bb'\n")
        assert got.acquire(timeout=30)
        (folder / "_private.py").write_text("x = 1\n")  # ignored: not a plugin
        plugin.unlink()
        assert got.acquire(timeout=30)
    finally:
        stop.set()
        thread.join(timeout=5)
        for p in folder.iterdir():
            p.unlink()
        Path(folder).rmdir()
    assert all(files == [str(plugin)] for files in changes) and len(changes) == 3


def test_logs_helper_delegates_to_the_logs_capability(cfg: Settings) -> None:
    df = ql.logs(host="nowhere", limit=5)
    assert list(df.columns)[:5] == ["time", "host", "component", "level", "message"]
    assert df.empty


def test_page_helpers_read_the_serving_apps_settings(cfg: Settings) -> None:
    from portal.web.app import create_app

    other = cfg.replace(prometheus_url="http://127.0.0.1:1")
    app = create_app(other)
    with app.app_context():
        assert ql._cfg() is other
    assert ql._cfg().prometheus_url == cfg.prometheus_url  # outside a request: the process's


def test_pages_with_their_own_inputs_get_no_generated_controls(cfg: Settings) -> None:
    import json

    import dash

    from portal.web.app import create_app

    create_app(cfg)
    by_path = {p["path"]: p for p in dash.page_registry.values()}

    def shown(path: str) -> str:
        return json.dumps(by_path[path]["layout"](range="1h").to_plotly_json(), default=str)

    assert "portal-controls" not in shown("/events")  # CONTROLS = False: its own topic input
    assert "portal-controls" in shown("/quicklooks/pointing_density")  # beam, bins
