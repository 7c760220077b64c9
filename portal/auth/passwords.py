"""Password hashing with Argon2 (argon2-cffi's defaults: Argon2id, salted, tunable cost)."""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from portal.errors import PortalError

_HASHER = PasswordHasher()
MIN_LENGTH = 10


def check_strength(password: str) -> None:
    """Refuse passwords too short to survive an offline guess, with one clear sentence."""
    if len(password) < MIN_LENGTH:
        raise PortalError(f"a password needs at least {MIN_LENGTH} characters")


def hash_password(password: str) -> str:
    check_strength(password)
    return _HASHER.hash(password)


@functools.cache
def _decoy() -> str:
    """A hash no password matches: checked when there is none, so that takes as long."""
    return _HASHER.hash(secrets.token_urlsafe(32))


def verify(stored: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing or corrupt hash never matches.

    A missing hash (unknown, disabled or proxy-only user) costs one Argon2 check all the same,
    so the answer's timing does not tell which user names exist.
    """
    try:
        return _HASHER.verify(stored or _decoy(), password) and bool(stored)
    except (VerificationError, InvalidHashError):
        return False
