"""The one exception hierarchy of rotator.

Every error a user can see is a ``RotatorError``; its message says what went
wrong and what to do next, and never contains a secret value. The CLI maps
``exit_code`` to the process exit status (2 for bad input, 1 for a failed
rotation or an unreachable dependency).
"""

from __future__ import annotations

from datetime import datetime


class RotatorError(Exception):
    """Base class: something rotator could not do, with an actionable message."""

    exit_code = 1


class ConfigError(RotatorError):
    """The configuration file or command-line input is invalid; nothing was touched."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class SecretLeakError(RotatorError):
    """Code tried to put a secret where only non-secret data may go (a bug in rotator)."""


class VendorError(RotatorError):
    """A vendor API call failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class VendorAuthError(VendorError):
    """The vendor rejected rotator's credential (401/403)."""


class VendorNotFound(VendorError):
    """The vendor does not know the key or the resource it belongs to (404)."""


class VendorConflict(VendorError):
    """The vendor reports a conflict, e.g. a key name already taken (409)."""


class VendorRateLimited(VendorError):
    """The vendor asked us to slow down (429); ``retry_after`` is in seconds when known.

    ``retry_at`` is set when the vendor said when its budget resets (an hourly limit):
    a step that fails on it is not retried before then.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, retry_at: datetime | None = None
    ) -> None:
        self.retry_after = retry_after
        self.retry_at = retry_at
        super().__init__(message, status=429)


class VendorUnavailable(VendorError):
    """The vendor could not be reached, timed out, or answered with a 5xx."""

    def __init__(
        self, message: str, *, status: int | None = None, never_sent: bool = False
    ) -> None:
        #: The request provably never reached the vendor (connection refused), so it
        #: may be repeated even when it is not idempotent.
        self.never_sent = never_sent
        super().__init__(message, status=status)


class VaultError(RotatorError):
    """A Vault operation failed."""


class VaultUnreachable(VaultError):
    """Vault did not answer."""


class VaultSealed(VaultError):
    """Vault is sealed and cannot serve secrets until it is unsealed."""


class VaultAuthError(VaultError):
    """Rotator could not log in to Vault, or its token is no longer valid."""


class VaultPermissionDenied(VaultError):
    """Rotator's Vault token lacks a capability on a path (403)."""


class VaultCasConflict(VaultError):
    """Someone else wrote the secret since rotator read it (check-and-set failed)."""


class VaultNotFound(VaultError):
    """The secret (or the requested version of it) does not exist."""


class AuditStoreError(RotatorError):
    """The audit database could not be used."""


class AuditKeyError(AuditStoreError):
    """The audit chain's key or anchor is missing or unusable."""


class SchemaOutOfDate(AuditStoreError):
    """The audit database schema is older (or newer) than this rotator expects."""


class LockLost(RotatorError):
    """This process lost a policy's lock while working on it; another process may own it now."""


class RotationFailed(RotatorError):
    """A rotation could not complete and needs attention."""


class RollbackRefused(RotatorError):
    """``rotator rollback`` cannot go back to the old key (none in grace); nothing was changed."""

    exit_code = 2


class SecretLost(RotationFailed):
    """A regenerated secret never reached Vault: the vendor's only working key is unknown."""


class HookFailed(RotatorError):
    """A consumer hook (notify, kubernetes_restart) failed; the rotation itself stands."""


class UnsafePlan(RotatorError):
    """A reconcile plan would revoke more keys than its limit; nothing was revoked."""

    exit_code = 2

    def __init__(self, revocations: int, limit: int) -> None:
        self.revocations = revocations
        self.limit = limit
        super().__init__(
            f"{revocations} orphans would be revoked, more than the limit of {limit} in one run; "
            "nothing was revoked: check the findings (rotator reconcile), then raise the limit "
            "or force the plan"
        )
