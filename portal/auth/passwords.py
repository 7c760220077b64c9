"""Password hashing with Argon2 (argon2-cffi's defaults: Argon2id, salted, tunable cost)."""

from __future__ import annotations

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


def verify(stored: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing or corrupt hash never matches."""
    if not stored:
        return False
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
