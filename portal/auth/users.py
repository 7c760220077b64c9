"""People who may use the portal: name, role, Argon2 password hash, disabled flag.

Every change is audited in the same transaction as the change itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from portal.auth import audit, passwords
from portal.auth.identity import Identity
from portal.auth.roles import parse_role
from portal.db.engine import get_engine
from portal.db.tables import users
from portal.errors import PortalError

NAME = re.compile(r"[a-z][a-z0-9._-]{0,62}")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool
    has_password: bool
    created_at: datetime
    updated_at: datetime


def parse_name(raw: str) -> str:
    if not NAME.fullmatch(raw):
        raise PortalError(
            f"user name {raw!r} must be lower-case letters, digits, '.', '_' or '-' "
            "(starting with a letter, at most 63)"
        )
    return raw


def _user(row: sa.Row) -> User:
    return User(
        row.name, row.role, row.disabled, bool(row.password_hash), row.created_at, row.updated_at
    )


def _state(row: sa.Row | None) -> dict[str, object] | None:
    return None if row is None else {"role": row.role, "disabled": row.disabled}


def get(database_url: str, name: str) -> sa.Row | None:
    with get_engine(database_url).connect() as conn:
        return conn.execute(sa.select(users).where(users.c.name == name)).first()


def list_users(database_url: str) -> list[User]:
    with get_engine(database_url).connect() as conn:
        return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.name))]


def add(database_url: str, who: Identity, name: str, role: str, password: str | None) -> User:
    """A new user; ``password`` None: sign-on through a trusted proxy only."""
    name, role = parse_name(name), parse_role(role)
    pw_hash = passwords.hash_password(password) if password is not None else None
    now = datetime.now(UTC)
    with get_engine(database_url).begin() as conn:
        if conn.execute(sa.select(users.c.name).where(users.c.name == name)).first():
            raise PortalError(f"user {name!r} already exists")
        conn.execute(
            sa.insert(users).values(
                name=name,
                role=role,
                password_hash=pw_hash,
                disabled=False,
                created_at=now,
                updated_at=now,
            )
        )
        audit.record(
            database_url,
            who,
            audit.Entry("user.add", name, after={"role": role, "disabled": False}),
            conn=conn,
        )
    return User(name, role, False, pw_hash is not None, now, now)


def _change(
    database_url: str, who: Identity, name: str, action: str, values: dict[str, object]
) -> None:
    """Apply ``values`` to one user, audited with before and after state."""
    with get_engine(database_url).begin() as conn:
        row = conn.execute(sa.select(users).where(users.c.name == name).with_for_update()).first()
        if row is None:
            raise PortalError(f"no user {name!r} (see: portal users list)")
        conn.execute(
            sa.update(users)
            .where(users.c.name == name)
            .values(**values, updated_at=datetime.now(UTC))
        )
        after = conn.execute(sa.select(users).where(users.c.name == name)).first()
        audit.record(
            database_url,
            who,
            audit.Entry(action, name, before=_state(row), after=_state(after)),
            conn=conn,
        )


def set_role(database_url: str, who: Identity, name: str, role: str) -> None:
    _change(database_url, who, name, "user.role", {"role": parse_role(role)})


def set_disabled(database_url: str, who: Identity, name: str, disabled: bool) -> None:
    _change(
        database_url,
        who,
        name,
        "user.disable" if disabled else "user.enable",
        {"disabled": disabled},
    )


def set_password(database_url: str, who: Identity, name: str, password: str) -> None:
    """A new password also ends every session of the user."""
    values = {"password_hash": passwords.hash_password(password), "sessions_after": _now()}
    _change(database_url, who, name, "user.passwd", values)


def end_sessions(database_url: str, name: str) -> None:
    """Void every session issued to ``name`` so far (logout: a copied cookie dies too)."""
    with get_engine(database_url).begin() as conn:
        conn.execute(sa.update(users).where(users.c.name == name).values(sessions_after=_now()))


def _now() -> datetime:
    return datetime.now(UTC)


def authenticate(database_url: str, name: str, password: str) -> sa.Row | None:
    """The user row when the password matches and the user is enabled; else None."""
    row = get(database_url, name)
    if row is None or row.disabled:
        passwords.verify(None, password)  # same work either way
        return None
    return row if passwords.verify(row.password_hash, password) else None
