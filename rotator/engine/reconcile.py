"""Acting on what inspection found: revoke orphans, flag drift for a person.

A ``ReconcilePlan`` says what reconcile would do; ``Reconciler.apply`` does it,
and refuses a plan that would revoke more keys than the plan's limit unless
forced (``UnsafePlan``), so the brake holds for every caller, not only the CLI.

Orphans (keys rotator created that nothing references) are revoked only once
they are older than the policy's grace period, under the policy's lock, each
revocation recorded. Drift is never "fixed": the policy is flagged
``needs_attention`` (scheduled rotation stops until a person acts) and the
notification webhooks hear of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from rotator.audit.store import AuditStore
from rotator.config.loader import Policy
from rotator.engine.inspection import SlotReport
from rotator.engine.lock import PolicyLocks
from rotator.errors import UnsafePlan
from rotator.providers.base import Provider, VendorKey
from rotator.vocabulary import DEFAULT_MAX_REVOCATIONS, Outcome, Result

AttentionChange = Literal["flagged", "cleared"]


@dataclass(frozen=True)
class PolicyFindings:
    """One policy's part of a plan: what inspection found, and which orphans may go."""

    policy: Policy
    report: SlotReport
    revocable: list[VendorKey]


@dataclass(frozen=True)
class ReconcilePlan:
    """What applying reconcile would do, per policy in the order asked."""

    findings: list[PolicyFindings]
    max_revocations: int = DEFAULT_MAX_REVOCATIONS

    @classmethod
    def build(
        cls,
        reports: Iterable[tuple[Policy, SlotReport]],
        now: datetime,
        *,
        max_revocations: int = DEFAULT_MAX_REVOCATIONS,
    ) -> ReconcilePlan:
        findings = [
            PolicyFindings(policy, report, revocable_orphans(policy, report, now))
            for policy, report in reports
        ]
        return cls(findings, max_revocations)

    @property
    def revocations(self) -> int:
        return sum(len(item.revocable) for item in self.findings)

    def raise_if_unsafe(self) -> None:
        """``UnsafePlan`` when the plan would revoke more keys than its limit."""
        if self.revocations > self.max_revocations:
            raise UnsafePlan(self.revocations, self.max_revocations)


@dataclass(frozen=True)
class Applied:
    """What applying a plan did for one policy."""

    policy: str
    revoked: list[str]
    attention: AttentionChange | None


def revocable_orphans(policy: Policy, report: SlotReport, now: datetime) -> list[VendorKey]:
    """Orphans old enough to go: created longer than the grace period ago."""
    return [
        key
        for key in report.orphans
        if key.created_at is not None and now - key.created_at >= policy.grace_period
    ]


class Reconciler:
    """Applies reconcile plans with the collaborators it is given."""

    def __init__(
        self,
        *,
        store: AuditStore,
        locks: PolicyLocks,
        notify: Callable[[Outcome], None],
        provider_for: Callable[[Policy], Provider[Any, Any]],
    ) -> None:
        self._store = store
        self._locks = locks
        self._notify = notify
        self._provider_for = provider_for

    def apply(self, plan: ReconcilePlan, *, force: bool = False) -> Iterator[Applied]:
        """Revoke the plan's orphans and record its drift, one policy at a time.

        ``UnsafePlan`` is raised here, before anything is done, unless ``force``.
        """
        if not force:
            plan.raise_if_unsafe()
        return self._apply(plan)

    def _apply(self, plan: ReconcilePlan) -> Iterator[Applied]:
        for item in plan.findings:
            revoked = self._revoke_orphans(item.policy, item.revocable)
            # A slot that could not be inspected says nothing about drift, nor its absence.
            attention = None if item.report.error else self._record_drift(item)
            yield Applied(item.policy.name, revoked, attention)

    def _revoke_orphans(self, policy: Policy, keys: list[VendorKey]) -> list[str]:
        """Revoke ``keys`` under the policy's lock; returns the ids revoked."""
        revoked: list[str] = []
        with self._locks.hold(policy.name) as lease:
            if not lease:
                return revoked
            provider = self._provider_for(policy)
            for key in keys:
                lease.confirm()
                provider.revoke_key(policy.selector, key.key_id)
                self._store.record_event(
                    policy.name,
                    "reconcile",
                    "revoked_orphan",
                    details={"key_id": key.key_id, "key_name": key.name},
                )
                revoked.append(key.key_id)
        return revoked

    def _record_drift(self, item: PolicyFindings) -> AttentionChange | None:
        """Flag the policy for a person when drift is found; clear the flag once it is gone."""
        name, drift = item.policy.name, item.report.drift
        state = self._store.policy_state(name)
        if drift:
            reason = "drift: " + " | ".join(drift)
            if state is None or state.attention != reason:
                self._store.set_attention(name, reason, details={"findings": len(drift)})
                self._notify(Outcome(name, Result.NEEDS_ATTENTION, reason))
                return "flagged"
        elif state is not None and state.attention:
            self._store.set_attention(name, None, details={"note": "no drift found"})
            return "cleared"
        return None
