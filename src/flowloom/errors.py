"""The error hierarchy: one root error, caught once by the CLI, one base per area.

Each error carries a one-line message that tells the user what to do, and the exit
code the command line returns for it (documented in docs/exit-codes.md).
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BodyTooLargeError",
    "ConfigError",
    "ConflictError",
    "FlowLoomError",
    "ForeignDatabaseError",
    "InputError",
    "KeyFileError",
    "KeyMissingError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProofError",
    "RemoteError",
    "SignatureError",
    "StoreCorruptError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownKindError",
    "VerificationError",
]

EXIT_VERIFICATION = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_STORE = 4
EXIT_CONFIG = 5
EXIT_NOT_FOUND = 6
EXIT_AUTH = 7
EXIT_DENIED = 8
EXIT_REMOTE = 9


class FlowLoomError(Exception):
    """Root of every error FlowLoom raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The text shown to a user: the message, then what to do about it."""
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class InputError(FlowLoomError):
    """The caller gave something FlowLoom cannot accept (bad JSON, bad UTF-8, ...)."""

    exit_code = EXIT_INPUT


class UnknownKindError(InputError):
    """An event kind that is not in the catalogue (docs/events.md)."""


class BodyTooLargeError(InputError):
    """A body over the configured size limit; nothing is stored."""


class NotFoundError(FlowLoomError):
    """An index, checkpoint or record that does not exist."""

    exit_code = EXIT_NOT_FOUND


class ConfigError(FlowLoomError):
    """Settings or key material that cannot be used."""

    exit_code = EXIT_CONFIG


class KeyFileError(ConfigError):
    """A signing or encryption key file that is missing, unreadable or malformed."""


class KeyMissingError(KeyFileError):
    """The key a log is pinned to (or the master key) is not in this FLOWLOOM_HOME.

    Raised before anything is written: FlowLoom never mints a second key for a log.
    """


class StoreError(FlowLoomError):
    """The database could not do what was asked."""

    exit_code = EXIT_STORE


class StoreUnavailableError(StoreError):
    """The database cannot be reached or opened."""


class StoreCorruptError(StoreError):
    """The database file is damaged."""


class ForeignDatabaseError(StoreError):
    """The database exists but was not created by FlowLoom."""


class VerificationError(FlowLoomError):
    """Something that should verify does not: a proof, a signature, the log itself."""

    exit_code = EXIT_VERIFICATION


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof does not verify."""


class SignatureError(VerificationError):
    """A signed note or checkpoint signature does not verify."""


class ConflictError(InputError):
    """The request clashes with what exists (a duplicate name, a stale state); HTTP 409."""


class AuthError(FlowLoomError):
    """Who is asking could not be established: no, wrong, expired or revoked credentials.

    The server answers 401; the message never says which part of a credential was wrong.
    """

    exit_code = EXIT_AUTH


class SignInError(AuthError):
    """A federated sign-in or logout (OIDC, SAML) failed; `reason` is the short code the
    audit trail records, apart from the message a person reads."""

    def __init__(self, reason: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class PermissionDeniedError(FlowLoomError):
    """The caller is known but its role does not allow this action here; HTTP 403."""

    exit_code = EXIT_DENIED


class RemoteError(FlowLoomError):
    """The FlowLoom server could not be reached or answered with an error."""

    exit_code = EXIT_REMOTE
