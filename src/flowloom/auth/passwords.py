"""Passwords: the length rule, and argon2id hashing that upgrades old hashes on use.

Only hashes are stored. Verification of an unknown account still spends the time of one
argon2 verification, so response times do not tell which email addresses exist.
"""

from __future__ import annotations

import contextlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from flowloom.errors import InputError

__all__ = ["MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "Passwords", "validate_password"]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
"""Long enough for any passphrase, short enough that hashing cannot be used to exhaust us."""


def validate_password(password: str) -> str:
    """Return `password` if it meets the length rule; raise InputError saying what to do."""
    if not isinstance(password, str):
        raise InputError("password must be text")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InputError(
            f"password is too short: use at least {MIN_PASSWORD_LENGTH} characters",
            hint="a passphrase of several words is easiest to remember",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InputError(f"password is too long: use at most {MAX_PASSWORD_LENGTH} characters")
    return password


class Passwords:
    """argon2id hashing with a configurable cost (tests use a cheap one)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """The argon2id hash to store for `password` (checked against the length rule)."""
        return self._hasher.hash(validate_password(password))

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`; None (no password set) never matches."""
        if stored is None:
            self.burn(password)
            return False
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Whether `stored` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def burn(self, password: str) -> None:
        """Spend one verification's time, for accounts that do not exist or cannot sign in."""
        if self._dummy is None:
            self._dummy = self._hasher.hash("flowloom-timing-equaliser")
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            self._hasher.verify(self._dummy, password)
