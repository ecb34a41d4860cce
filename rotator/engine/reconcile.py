"""Acting on what inspection found: revoke orphans, flag drift for a person.

Orphans (keys rotator created that nothing references) are revoked only once
they are older than the policy's grace period, under the policy's lock, each
revocation recorded. Drift is never "fixed": the policy is flagged
``needs_attention`` (scheduled rotation stops until a person acts) and the
notification webhooks hear of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rotator.config.loader import Policy
from rotator.engine.inspection import SlotReport
from rotator.providers.base import VendorKey
from rotator.vocabulary import Outcome, Result

if TYPE_CHECKING:
    from rotator.engine.engine import Engine


def revocable_orphans(policy: Policy, report: SlotReport, now: datetime) -> list[VendorKey]:
    """Orphans old enough to go: created longer than the grace period ago."""
    return [
        key
        for key in report.orphans
        if key.created_at is not None and now - key.created_at >= policy.grace_period
    ]


def revoke_orphans(engine: Engine, policy: Policy, keys: list[VendorKey]) -> list[str]:
    """Revoke ``keys`` under the policy's lock; returns the ids revoked."""
    revoked: list[str] = []
    with engine.locks.hold(policy.name) as lease:
        if not lease:
            return revoked
        provider = engine.provider_for(policy)
        for key in keys:
            lease.confirm()
            provider.revoke_key(policy.selector, key.key_id)
            engine.store.record_event(
                policy.name,
                "reconcile",
                "revoked_orphan",
                details={"key_id": key.key_id, "key_name": key.name},
            )
            revoked.append(key.key_id)
    return revoked


def record_drift(engine: Engine, policy: Policy, report: SlotReport) -> str | None:
    """Flag the policy for a person when drift is found; clear the flag once it is gone.

    Returns what changed: ``"flagged"``, ``"cleared"`` or None.
    """
    state = engine.store.policy_state(policy.name)
    if report.drift:
        reason = "drift: " + " | ".join(report.drift)
        if state is None or state.attention != reason:
            engine.store.set_attention(policy.name, reason, details={"findings": len(report.drift)})
            engine.notifier.notify(Outcome(policy.name, Result.NEEDS_ATTENTION, reason))
            return "flagged"
    elif state is not None and state.attention:
        engine.store.set_attention(policy.name, None, details={"note": "no drift found"})
        return "cleared"
    return None
