"""What a fresh local stack needs to be usable and safe: a first admin, and the token with which
Alertmanager calls the portal's webhook (written into its generated config)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from portal.auth import tokens, users
from portal.auth.identity import Identity
from portal.settings import Settings

ALERTMANAGER_TOKEN = "alertmanager"
ADMIN = "admin"
SETUP = Identity("setup", "cli", "admin", "local")  # the actor of what `portal run` sets up


def secret_file(path: Path, make: str) -> str:
    """The secret in ``path``, written once with mode 0600 (``make`` the first time). Several
    processes may race here (gunicorn workers): one creates it, the others read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        deadline = time.monotonic() + 5  # the creator may still be writing it
        while not (found := path.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return found
    with os.fdopen(fd, "w") as out:
        out.write(make + "\n")
    return make


def alertmanager_token_file(cfg: Settings) -> Path:
    """Where the local stack keeps Alertmanager's webhook token (its config points here)."""
    path = cfg.data_dir / "secrets" / "alertmanager.token"
    secret_file(path, tokens.new_secret())
    return path


def register_alertmanager_token(cfg: Settings) -> bool:
    """Make the token in the file valid for the webhook (role operator); idempotent."""
    secret = alertmanager_token_file(cfg).read_text().strip()
    return tokens.ensure(cfg.database_url, SETUP, ALERTMANAGER_TOKEN, "operator", secret)


def ensure_admin(cfg: Settings) -> str | None:
    """With no user at all, create ``admin`` with a random password: returned once, and kept
    in ``<data_dir>/admin-password`` (0600). None when users exist already."""
    if users.list_users(cfg.database_url):
        return None
    password = secret_file(cfg.data_dir / "admin-password", secrets.token_urlsafe(12))
    users.add(cfg.database_url, SETUP, ADMIN, "admin", password)
    return password
