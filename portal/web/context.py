"""Request code reads the app's own settings (``create_app(cfg)``), never process globals."""

from __future__ import annotations

import flask

from portal.settings import Settings

CONFIG_KEY = "PORTAL_SETTINGS"


def settings() -> Settings:
    """The settings of the app serving this request (``server.config["PORTAL_SETTINGS"]``)."""
    cfg: Settings = flask.current_app.config[CONFIG_KEY]
    return cfg
