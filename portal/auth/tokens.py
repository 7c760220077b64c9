"""Machine API tokens: random, shown once, stored as SHA-256, named, with a role and an expiry.

Tokens carry 256 random bits, so a fast hash is enough to store them (nothing to brute-force);
passwords, chosen by people, get Argon2 instead.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from portal.auth import audit
from portal.auth.identity import Identity
from portal.auth.roles import parse_role
from portal.auth.users import parse_name
from portal.db.engine import get_engine
from portal.db.tables import api_tokens
from portal.errors import PortalError

PREFIX = "obs_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Token:
    name: str
    role: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now:
            return "expired"
        return "active"


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def create(
    database_url: str,
    who: Identity,
    name: str,
    role: str,
    expires_at: datetime | None = None,
    secret: str | None = None,
) -> str:
    """Store a new token and return its secret (shown once); ``secret`` registers a given one."""
    name, role = parse_name(name), parse_role(role)
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise PortalError("a token's expiry must be in the future")
    raw = secret or new_secret()
    with get_engine(database_url).begin() as conn:
        if conn.execute(sa.select(api_tokens.c.name).where(api_tokens.c.name == name)).first():
            raise PortalError(f"a token named {name!r} exists (revoke it first)")
        conn.execute(
            sa.insert(api_tokens).values(
                name=name,
                token_hash=digest(raw),
                role=role,
                created_by=who.label,
                created_at=datetime.now(UTC),
                expires_at=expires_at,
            )
        )
        audit.record(
            database_url,
            who,
            audit.Entry(
                "token.create",
                name,
                after={"role": role, "expires_at": expires_at.isoformat() if expires_at else None},
            ),
            conn=conn,
        )
    return raw


def ensure(database_url: str, who: Identity, name: str, role: str, secret: str) -> bool:
    """Register ``secret`` as token ``name`` unless exactly that is active; True when changed.

    Used for tokens a configuration file already holds (Alertmanager's): idempotent on reruns.
    """
    with get_engine(database_url).connect() as conn:
        row = conn.execute(sa.select(api_tokens).where(api_tokens.c.name == name)).first()
    if row is not None and row.token_hash == digest(secret) and row.revoked_at is None:
        return False
    if row is not None:
        revoke(database_url, who, name)
        with get_engine(database_url).begin() as conn:  # names are unique: make room
            conn.execute(sa.delete(api_tokens).where(api_tokens.c.name == name))
    create(database_url, who, name, role, secret=secret)
    return True


def revoke(database_url: str, who: Identity, name: str) -> None:
    now = datetime.now(UTC)
    # autocommit: the lookup is one round trip, not BEGIN, SELECT, COMMIT on every request
    engine = get_engine(database_url).execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(api_tokens).where(api_tokens.c.name == name).with_for_update()
        ).first()
        if row is None:
            raise PortalError(f"no token {name!r} (see: portal tokens list)")
        if row.revoked_at is None:
            conn.execute(
                sa.update(api_tokens).where(api_tokens.c.name == name).values(revoked_at=now)
            )
        audit.record(
            database_url,
            who,
            audit.Entry(
                "token.revoke",
                name,
                before={"revoked": row.revoked_at is not None},
                after={"revoked": True},
            ),
            conn=conn,
        )


def list_tokens(database_url: str) -> list[Token]:
    with get_engine(database_url).connect() as conn:
        rows = conn.execute(sa.select(api_tokens).order_by(api_tokens.c.name)).all()
    return [
        Token(
            r.name, r.role, r.created_by, r.created_at, r.expires_at, r.revoked_at, r.last_used_at
        )
        for r in rows
    ]


def verify(database_url: str, raw: str) -> Token | None:
    """The active token with this secret, or None; notes when it was last used, at most once a
    minute so that a busy machine client does not write on every request."""
    now = datetime.now(UTC)
    # autocommit: the lookup is one round trip, not BEGIN, SELECT, COMMIT on every request
    engine = get_engine(database_url).execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(api_tokens).where(
                api_tokens.c.token_hash == digest(raw),
                api_tokens.c.revoked_at.is_(None),
                sa.or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > now),
            )
        ).first()
        if row is not None and (
            row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION
        ):
            conn.execute(
                sa.update(api_tokens).where(api_tokens.c.name == row.name).values(last_used_at=now)
            )
    if row is None:
        return None
    return Token(
        row.name,
        row.role,
        row.created_by,
        row.created_at,
        row.expires_at,
        row.revoked_at,
        row.last_used_at,
    )
