"""Portal tiles link to Grafana only when PORTAL_GRAFANA_URL is set and Grafana answers.

The "Grafana" here is a stand-in HTTP server answering ``/api/health`` (no Grafana binary is
installed here): what the portal asks of it is exactly that one request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import flask
import pytest
from dash import html

from portal import routes, settings
from portal.settings import Settings
from portal.web import ui
from tests.conftest import free_port


class Health(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        type(self).hits += 1
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b'{"database": "ok"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def grafana() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _tile_links(cfg: Settings) -> list[str]:
    app = flask.Flask(__name__)
    app.config[routes.CONFIG_KEY] = cfg
    with app.app_context():
        tile = ui.tile("Hosts", "3", "/hosts", "obs-host", "tile-hosts")
    links = tile.children[2].children
    return [a.href for a in links if isinstance(a, html.A)]


def test_no_grafana_setting_means_no_links(cfg: Settings) -> None:
    assert settings.load({}).grafana_url == ""  # the default: no links
    assert _tile_links(cfg.replace(grafana_url="")) == []


def test_links_when_grafana_answers_checked_once_a_minute(cfg: Settings, grafana: str) -> None:
    Health.hits = 0
    assert _tile_links(cfg.replace(grafana_url=grafana)) == [f"{grafana}/d/obs-host"]
    for _ in range(5):  # every page view renders tiles: Grafana is asked once, not each time
        assert _tile_links(cfg.replace(grafana_url=grafana)) == [f"{grafana}/d/obs-host"]
    assert Health.hits == 1


def test_no_links_when_grafana_does_not_answer(cfg: Settings) -> None:
    silent = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert _tile_links(cfg.replace(grafana_url=silent)) == []
