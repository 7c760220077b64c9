"""``portal users`` and ``portal tokens``: who may use the portal (admin only, audited)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from portal import settings
from portal.auth.identity import Identity
from portal.auth.roles import ROLES, requires
from portal.errors import PortalError


def _who() -> Identity:
    from portal.auth.cli_access import current

    return current()


def _password(stdin: bool, confirm: bool = True) -> str:
    """From one line of stdin (scripts) or a hidden prompt (a terminal)."""
    if stdin:
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise PortalError("no password on standard input")
        return line
    if not sys.stdin.isatty():
        raise PortalError("no terminal to ask for a password: use --password-stdin")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return value


@click.group()
def users() -> None:
    """People who may use the portal."""


@requires("admin")
@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--no-password", is_flag=True, help="Sign-on through a trusted proxy only.")
def users_add(name: str, role: str, password_stdin: bool, no_password: bool) -> None:
    """Add user NAME with a role and a password (asked for, hidden)."""
    from portal.auth import users as store

    password = None if no_password else _password(password_stdin)
    user = store.add(settings.get().database_url, _who(), name, role, password)
    click.echo(f"user {user.name} added ({user.role})")


@requires("admin")
@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def users_list(as_json: bool) -> None:
    """Every user with role, state and last change."""
    from portal.auth import users as store

    for u in store.list_users(settings.get().database_url):
        state = "disabled" if u.disabled else "enabled"
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "name": u.name,
                        "role": u.role,
                        "state": state,
                        "password": u.has_password,
                        "updated_at": u.updated_at.isoformat(),
                    }
                )
            )
        else:
            pw = "" if u.has_password else "  (proxy sign-on only)"
            click.echo(f"{u.name:20} {u.role:10} {state:9} {u.updated_at:%Y-%m-%d %H:%M}{pw}")


@requires("admin")
@users.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
def users_role(name: str, role: str) -> None:
    """Give user NAME another role."""
    from portal.auth import users as store

    store.set_role(settings.get().database_url, _who(), name, role)
    click.echo(f"user {name} is now {role}")


@requires("admin")
@users.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
def users_disable(name: str, enable: bool) -> None:
    """Disable user NAME: their sessions end at their next request."""
    from portal.auth import users as store

    store.set_disabled(settings.get().database_url, _who(), name, not enable)
    click.echo(f"user {name} {'enabled' if enable else 'disabled'}")


@requires("admin")
@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_passwd(name: str, password_stdin: bool) -> None:
    """Set user NAME's password."""
    from portal.auth import users as store

    store.set_password(settings.get().database_url, _who(), name, _password(password_stdin))
    click.echo(f"password of {name} changed")


@click.group()
def tokens() -> None:
    """API tokens for machines (Bearer)."""


@requires("admin")
@tokens.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.option("--expires", default=None, help="Lifetime, e.g. 30d or 12h (default: none).")
def tokens_create(name: str, role: str, expires: str | None) -> None:
    """Create token NAME; prints its secret once (only its hash is stored)."""
    from portal.auth import tokens as store
    from portal.timeparse import parse_duration

    until = datetime.now(UTC) + parse_duration(expires, "--expires") if expires else None
    secret = store.create(settings.get().database_url, _who(), name, role, until)
    click.echo(secret)
    click.echo(
        f"token {name} ({role}{', expires ' + until.isoformat(timespec='minutes') if until else ''}"
        "): send it as 'Authorization: Bearer <token>'; it is not shown again",
        err=True,
    )


@requires("admin")
@tokens.command("alertmanager")
def tokens_alertmanager() -> None:
    """Create once the token Alertmanager sends to /api/alerts; print its file (0600)."""
    from portal.auth import bootstrap

    cfg = settings.get()
    changed = bootstrap.register_alertmanager_token(cfg)
    path = bootstrap.alertmanager_token_file(cfg)
    click.echo(f"{path} ({'registered' if changed else 'already registered'}; role operator)")


@requires("admin")
@tokens.command("list")
def tokens_list() -> None:
    """Every token: role, state, creator, expiry, last use (never the secret)."""
    from portal.auth import tokens as store

    for t in store.list_tokens(settings.get().database_url):
        expires = f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "-"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        click.echo(
            f"{t.name:20} {t.role:10} {t.state():8} by {t.created_by:24} "
            f"expires {expires:16} used {used}"
        )


@requires("admin")
@tokens.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke token NAME at once."""
    from portal.auth import tokens as store

    store.revoke(settings.get().database_url, _who(), name)
    click.echo(f"token {name} revoked")
