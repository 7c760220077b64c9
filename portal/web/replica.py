"""Reads at viewer level go to the read replica (``PORTAL_DATABASE_READ_URL``) when one is set.

A route or Dash callback that needs no more than ``viewer`` may not change anything (access
control guarantees it), so whatever it queries through ``portal.db.engine.get_engine`` can come
from a streaming replica. Identity checks, logins, writes and everything outside the web app
stay on the primary. A replica lags its primary by the replay delay (usually milliseconds).
"""

from __future__ import annotations

import flask

from portal import routes
from portal.auth import web as auth_web
from portal.db import engine as db_engine


def route_reads() -> None:
    """Before a route runs (after the access check): viewer-level requests read the replica."""
    cfg = routes.settings()
    if cfg.database_read_url and auth_web.needed_role(flask.current_app) == "viewer":
        db_engine.set_read_replica(cfg.database_url, cfg.database_read_url)


def end(_exc: BaseException | None) -> None:
    db_engine.clear_read_replica()


def install(blueprint: flask.Blueprint) -> None:
    """Hook the routing into every request of the app that mounts ``blueprint``."""
    blueprint.before_app_request(route_reads)
    blueprint.teardown_app_request(end)
