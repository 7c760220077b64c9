"""Who runs a ``portal`` command, and may they: the OS user, with the role of the portal user of
the same name; ``admin`` for root and for the owner of the data dir, who can read the session
key and the database settings anyway."""

from __future__ import annotations

import getpass
import os
from functools import lru_cache
from pathlib import Path

from portal import settings
from portal.auth.identity import Identity, cli_identity
from portal.auth.roles import at_least
from portal.errors import PortalError


@lru_cache(maxsize=1)
def current() -> Identity:
    """The identity of this command (looked up once per process)."""
    cfg = settings.get()
    if os.geteuid() == 0 or _owns(cfg.data_dir):
        return cli_identity("admin")
    import sqlalchemy.exc

    from portal.auth import users

    try:
        row = users.get(cfg.database_url, getpass.getuser())
    except sqlalchemy.exc.ProgrammingError:  # no users table yet: nobody was given a role
        row = None
    return cli_identity(row.role if row is not None and not row.disabled else "viewer")


def _owns(path: Path) -> bool:
    try:
        return path.stat().st_uid == os.geteuid()
    except OSError:
        return False


def check(role: str, command: str) -> None:
    """Refuse the command with one line when the OS user's role is below ``role``."""
    who = current()
    if not at_least(who.role, role):
        raise PortalError(
            f"`portal {command}` needs role {role}; {who.actor} has {who.role} "
            f"(an admin can run: portal users add {getpass.getuser()} --role {role})"
        )
