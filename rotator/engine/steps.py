"""The state-to-step table: which step a rotation takes next from each state.

``RotationRun`` (protocol.py) takes the steps; ``DryRun`` (dryrun.py) describes
them for ``plan`` and ``rotate now --dry-run`` without acting. Both walk this one
table, and both implement every step (an abstract method each), so a description
cannot show a step the run would not take, nor leave one out. How ``rotate now``
starts on a policy (a fresh rotation, a rotation left in grace, or one resumed)
is decided here too, for both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from enum import Enum

from rotator.audit.store import RotationRecord
from rotator.vocabulary import State


class Steps(ABC):
    """One method per step of the rotation protocol, in protocol order."""

    def step_for(self, state: State) -> Callable[[], None] | None:
        """The step due in ``state``; None once the rotation is finished."""
        steps: dict[State, Callable[[], None]] = {
            State.PLANNED: self.mint,
            State.MINTING: self.recover_minting,
            State.MINTED: self.store_or_recover,
            State.STORED: self.verify,
            State.VERIFIED: self.start_grace,
            State.GRACE: self.revoke,
            State.ROLLING_BACK: self.roll_back,
        }
        return steps.get(state)

    @abstractmethod
    def mint(self) -> None:
        """planned: ask the vendor for the new key (create, or regenerate in place)."""

    @abstractmethod
    def recover_minting(self) -> None:
        """minting: an interrupted mint; clean up what it may have left, then mint again."""

    @abstractmethod
    def store_or_recover(self) -> None:
        """minted: write the new secret to Vault, or recognise that it is already there."""

    @abstractmethod
    def verify(self) -> None:
        """stored: prove the new key works, where the vendor allows it."""

    @abstractmethod
    def start_grace(self) -> None:
        """verified: persist when the old key may go (or finish: nothing to revoke)."""

    @abstractmethod
    def revoke(self) -> None:
        """grace: once grace is over, revoke the old key and finish."""

    @abstractmethod
    def roll_back(self) -> None:
        """rolling_back: restore the previous Vault version and revoke the new key."""


class Start(Enum):
    """How ``rotate now`` starts on a policy."""

    FRESH = "fresh"  # no unfinished rotation: plan a new one
    LEAVE_IN_GRACE = "leave_in_grace"  # its new key is in Vault already: nothing to do yet
    RESUME = "resume"  # finish the unfinished rotation (then, in an emergency, a fresh one)


def rotate_now_start(active: RotationRecord | None, *, emergency: bool, now: datetime) -> Start:
    """What ``rotate now`` does first with the policy's unfinished rotation ``active``."""
    if active is None:
        return Start.FRESH
    in_grace = active.state == State.GRACE
    if in_grace and not emergency and active.grace_until and now < active.grace_until:
        return Start.LEAVE_IN_GRACE
    return Start.RESUME
