"""Words every layer shares, defined below all of them.

The configuration names a rotation ``strategy`` before any provider is known,
and providers declare which strategies they support; the audit store persists a
rotation's ``State``, the engine reports each run as an ``Outcome``, and the
notifications and hooks send those outcomes on. All import them from here so
that no layer has to import one above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Strategy(StrEnum):
    """How a key is replaced at the vendor."""

    REGENERATE = "regenerate"
    CREATE_THEN_DELETE = "create_then_delete"


class State(StrEnum):
    """Where a rotation stands; each is persisted before the next external call."""

    PLANNED = "planned"
    MINTING = "minting"  # the vendor was (maybe) asked for a new key; its id is not known yet
    MINTED = "minted"  # the vendor issued the key (id known); Vault may not have it yet
    STORED = "stored"  # the new secret is the current Vault version
    VERIFIED = "verified"
    GRACE = "grace"  # waiting for grace_until, then the old key is revoked
    ROLLING_BACK = "rolling_back"  # the new key failed verification: back to the old one
    REVERTING = "reverting"  # an operator sent a rotation in grace back to its old key
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"

    @property
    def serves_new_key(self) -> bool:
        """Whether Vault's current version holds the rotation's new key in this state."""
        return self in (State.STORED, State.VERIFIED, State.GRACE, State.COMPLETED)

    @property
    def is_terminal(self) -> bool:
        """Whether nothing more happens to a rotation in this state."""
        return self in (State.COMPLETED, State.ROLLED_BACK)


#: Rotation states after which nothing more happens to that rotation.
TERMINAL_STATES = frozenset(state for state in State if state.is_terminal)

#: Revocations one reconcile plan may make unless forced: more points at a mistake (a changed
#: name prefix, a selector pointing at the wrong slot) rather than at leftovers of crashes.
DEFAULT_MAX_REVOCATIONS = 10


class Result(StrEnum):
    """What one run of ``rotate now`` / ``rotate due`` did for a policy."""

    COMPLETED = "completed"
    ADOPTED = "adopted"  # an existing key was recorded as current; nothing was rotated
    WAITING = "waiting"  # in grace: the old key is revoked by a later run
    GRACE_EXTENDED = "grace_extended"  # consumers still use the old key: grace goes on
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # will be retried with backoff
    NEEDS_ATTENTION = "needs_attention"
    LOCKED = "locked"  # another process is rotating this policy
    LOST_LOCK = "lost_lock"  # this process lost the policy's lock mid-way and stopped
    NOT_DUE = "not_due"
    DRY_RUN = "dry_run"
    IN_GRACE = "in_grace"  # rotate now found a rotation in grace: no new key was made
    RETRY_PENDING = "retry_pending"  # a failed rotation waits for its retry time
    PAUSED = "paused"  # held by an operator (rotator pause) or enabled: false

    @property
    def is_failure(self) -> bool:
        return self in (
            Result.ROLLED_BACK,
            Result.FAILED,
            Result.NEEDS_ATTENTION,
            Result.LOST_LOCK,
        )


@dataclass(frozen=True)
class Outcome:
    policy: str
    result: Result
    message: str = ""
    rotation_id: str | None = None
    state: State | None = None
    new_key_id: str | None = None
    vault_version: int | None = None
    grace_until: datetime | None = None
    calls: tuple[str, ...] = ()
    #: False when this run made no attempt (a retry not yet due, a flag set by an earlier
    #: run): such a failure is reported but is not this run's failure, and it is neither
    #: counted in the metrics nor notified again.
    attempted: bool = True
