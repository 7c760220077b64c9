"""Roles, ordered: viewer < scientist < operator < admin; and the one way to declare a need.

``requires(role)`` marks a Flask view, a Dash callback with side effects, or a click command
(plugins use the same helper, as ``portal.requires``). The web app and the CLI enforce it; a
test enumerates every route, callback and command and fails on an undeclared mutating one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from portal.errors import PortalError

ROLES = ("viewer", "scientist", "operator", "admin")
PUBLIC = "public"  # no identity needed: /healthz, /metrics, the login page
ATTR = "portal_role"

F = TypeVar("F", bound=Callable[..., Any])


def parse_role(raw: str) -> str:
    """A role name, or one clear error."""
    name = raw.strip().lower()
    if name not in ROLES:
        raise PortalError(f"unknown role {raw!r}: use one of {', '.join(ROLES)}")
    return name


def at_least(have: str | None, need: str) -> bool:
    """True when role ``have`` may do what ``need`` allows (``public`` needs nothing)."""
    if need == PUBLIC:
        return True
    if have not in ROLES:
        return False
    return ROLES.index(have) >= ROLES.index(need)


def requires(role: str) -> Callable[[F], F]:
    """Declare the role a route, a side-effect Dash callback or a CLI command needs."""
    if role != PUBLIC:
        parse_role(role)

    def mark(obj: F) -> F:
        setattr(obj, ATTR, role)
        if isinstance(obj, click.Command) and obj.callback is not None:
            obj.callback = _guarded(obj.callback, role, obj.name or "?")
        return obj

    return mark


def _guarded(callback: Callable[..., Any], role: str, name: str) -> Callable[..., Any]:
    """A click command's function, checking the CLI user's role before it runs."""

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        from portal.auth.cli_access import check

        check(role, click.get_current_context().command_path.removeprefix("portal ") or name)
        return callback(*args, **kwargs)

    setattr(run, ATTR, role)
    return run


def declared(obj: Any) -> str | None:
    """The role ``obj`` declares, following ``functools.wraps`` chains; None if undeclared."""
    while obj is not None:
        role = getattr(obj, ATTR, None)
        if role is not None:
            return str(role)
        obj = getattr(obj, "__wrapped__", None)
    return None
