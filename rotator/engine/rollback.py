"""Rolling a rotation in grace back to its old key (``rotator rollback``).

While a rotation waits in grace its old key is still live at the vendor and
its old secret is still a version of the policy's Vault secret. Going back is
three steps, each persisted before its external call, like the rotation
protocol (rotator/engine/protocol.py):

grace -> reverting (who and why, on the row) -> restore -> revoke new key -> rolled_back

- restore: the old secret becomes Vault's current version again: a new KV v2
  version with the old value, check-and-set against the version the rotation
  wrote, its custom_metadata naming the old key. A process killed after the
  write finds its own write again (the current value is the old one) and
  never writes twice; anyone else's write since is never overwritten.
- revoke: the expiry the vendor was given for the grace period is lifted and
  the new key is revoked (both safe to repeat).
- rolled_back: the policy's current key is the old key again, re-adopted now,
  so the schedule counts from the rollback.

A rotation in ``reverting`` is finished by whoever runs next: ``rollback``
again, ``rotate now``, ``rotate due`` or the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rotator.audit.store import AuditStore, RotationRecord
from rotator.config.loader import Policy
from rotator.engine.protocol import RotationRun
from rotator.errors import RollbackRefused, VaultNotFound
from rotator.providers.base import Provider, Strategy, VendorKey
from rotator.secret import Secret, scrub
from rotator.timestamps import format_time
from rotator.vault_metadata import metadata_key
from rotator.vocabulary import Outcome, Result, State

if TYPE_CHECKING:
    from rotator.vault import VaultStore


@dataclass(frozen=True)
class RollbackTarget:
    """The rotation a rollback goes back from, and the secrets its free-text reason must not
    quote (held, so that ``scrub`` knows them when the reason is stored)."""

    rotation: RotationRecord
    secrets: tuple[Secret, ...] = ()


def rollback_target(
    policy: Policy,
    store: AuditStore,
    provider: Provider[Any, Any],
    vault: VaultStore,
    now: datetime,
) -> RollbackTarget:
    """The rotation ``rollback`` sends back to its old key; ``RollbackRefused`` says why not.

    Reads only (the database, the vendor's key list, a Vault version): a refusal
    changes nothing. A rollback already under way is returned as it is, to finish.
    """
    name = policy.name
    if policy.strategy is Strategy.REGENERATE:
        raise RollbackRefused(
            f"policy {name} regenerates its key in place: the old secret stopped working at "
            "the vendor when the new one was issued, so there is no old key to go back to. "
            f"Fix the consumers to read the new secret from Vault, or run 'rotator rotate now "
            f"{name}' for another new key"
        )
    active = store.active_rotation(name)
    if active is not None and active.state == State.REVERTING:
        return RollbackTarget(active)
    if active is None:
        raise RollbackRefused(f"{_nothing_in_grace(store, name)}; {_instead(name)}")
    if active.state != State.GRACE:
        raise RollbackRefused(
            f"rotation {active.id} of {name} is in state {active.state}, not in grace: its "
            f"new key is not settled in Vault yet. Finish it with 'rotator rotate now {name}' "
            "(it waits in grace afterwards, when the grace period is not 0), then roll back"
        )
    if active.emergency:
        raise RollbackRefused(
            f"rotation {active.id} of {name} was an emergency rotation (--emergency: the old "
            f"key {active.old_key_id} leaked); rotator does not put a leaked key back"
        )
    assert active.old_key_id is not None
    old = provider.find_key(policy.selector, active.old_key_id)
    if not _live(old, now):
        raise RollbackRefused(
            f"the old key {active.old_key_id} of rotation {active.id} is no longer live at "
            f"{policy.provider_type} (revoked or expired), so there is nothing to go back to; "
            f"{_instead(name)}"
        )
    old_secret = _old_secret(vault, active)
    found = vault.read(active.vault_path)
    current = found.version if found else 0
    if current != active.vault_version:
        raise RollbackRefused(
            f"Vault's current version of {vault.mount}/{active.vault_path} is {current}, not "
            f"version {active.vault_version} that rotation {active.id} wrote: someone wrote the "
            "secret since, and rotator does not overwrite it. Check Vault first"
        )
    new_secret = found.field(active.vault_field) if found else None
    return RollbackTarget(active, (old_secret, *([new_secret] if new_secret else [])))


def describe_rollback(rotation: RotationRecord) -> list[str]:
    """What a rollback of ``rotation`` will do, in words for the confirmation prompt."""
    if rotation.state == State.REVERTING:
        return [f"finish the rollback of rotation {rotation.id} already under way"]
    path = rotation.vault_path
    return [
        f"Vault {path}: write the old secret (version {rotation.vault_base_version}) as a new "
        f"version, check-and-set on version {rotation.vault_version}; metadata names key "
        f"{rotation.old_key_id}",
        f"vendor: revoke the new key {rotation.new_key_id}; the old key "
        f"{rotation.old_key_id} stays",
        "consumers that already read the new key must read Vault again",
    ]


def request_rollback(
    store: AuditStore, target: RollbackTarget, rotation: RotationRecord, *, reason: str, by: str
) -> RotationRecord:
    """Persist the operator's decision, before any external call: the rotation is reverting.

    ``rotation`` is the target's, as claimed by this process.
    """
    assert target.secrets, "a new rollback's target holds the secrets its reason must not quote"
    reason = scrub(reason)  # free text: should it quote either secret, the row never holds it
    return store.update_rotation(
        rotation,
        step="rollback",
        outcome="requested",
        details={
            "by": by,
            "reason": reason,
            "old_key_id": rotation.old_key_id,
            "new_key_id": rotation.new_key_id,
        },
        state=State.REVERTING,
        rollback_reason=reason,
        rolled_back_by=by,
        needs_attention=False,
        attempts=0,
        next_attempt_at=None,
        last_error=None,
    )


class RollbackRun(RotationRun):
    """Drives a rotation in ``reverting`` to ``rolled_back``, one persisted step at a time."""

    def step_for(self, state: State) -> Callable[[], None] | None:
        """Only the rollback's step: a reverting rotation never goes on with the protocol."""
        return self.revert if state == State.REVERTING else None

    def revert(self) -> None:
        r = self.rotation
        if r.restored_vault_version is None:
            try:
                self.restore(_old_secret(self.vault, r))
            except RollbackRefused as cannot:
                self._abandon(cannot)
                return
        if self.policy.self_rotating:
            # Rotator's own token goes back to the old key before the new one is revoked.
            self.ctx.provider.use_token(_old_secret(self.vault, self.rotation))
        self.revoke_new_key()

    def _abandon(self, cannot: RollbackRefused) -> None:
        """Vault changed since the rollback was asked for: back to grace, flagged for a person.

        Nothing was restored, so the new key is still the one in Vault and stays live.
        """
        message = (
            f"rollback abandoned: {cannot}; nothing was restored: the new key stays current in "
            "Vault and the rotation waits in grace again"
        )
        self._advance(
            State.GRACE,
            step="rollback",
            outcome="failed",
            details={"error": message},
            needs_attention=True,
            last_error=message,
        )

    def restore(self, old: Secret) -> None:
        """The old secret as Vault's current version, check-and-set on the rotation's version."""
        r = self.rotation
        current = self.vault.read(self._path)
        if current is not None and current.version == r.vault_version:
            self._advance(
                State.REVERTING,
                step="restore",
                outcome="started",
                details={
                    "vault_path": self._path,
                    "cas": r.vault_version,
                    "from_vault_version": r.vault_base_version,
                },
            )
            version = self.vault.write_field(self._path, r.vault_field, old, cas=current.version)
        elif (
            current is not None
            and current.version > (r.vault_version or 0)
            and current.field(r.vault_field) == old
        ):
            version = current.version  # this rollback's own write, before a crash
        else:
            found = current.version if current else "none"
            raise RollbackRefused(
                f"Vault's current version of {self._path} is {found}, not version "
                f"{r.vault_version} that rotation {r.id} wrote: someone wrote the secret since, "
                "and rotator does not overwrite it"
            )
        self._label_old_key(version)
        self._advance(
            State.REVERTING,
            step="restore",
            outcome="succeeded",
            details={"vault_path": self._path, "vault_version": version, "key_id": r.old_key_id},
            restored_vault_version=version,
        )

    def _label_old_key(self, version: int) -> None:
        r = self.rotation
        state = self.ctx.store.policy_state(r.policy)
        # The rotation that made the old key ("none": it was adopted); Vault refuses empty values.
        made_by = state.last_rotation_id if state and state.current_key_id == r.old_key_id else None
        field = r.vault_field
        self.vault.update_metadata(
            self._path,
            {
                metadata_key(field, "key_id"): r.old_key_id or "",
                metadata_key(field, "rotation_id"): made_by or "none",
                metadata_key(field, "version"): str(version),
                metadata_key(field, "rolled_back_rotation_id"): r.id,
                metadata_key(field, "policy"): r.policy,
            },
        )

    def revoke_new_key(self) -> None:
        r = self.rotation
        assert r.old_key_id is not None
        assert r.new_key_id is not None
        self._advance(
            State.REVERTING,
            step="revoke",
            outcome="started",
            details={"key_id": r.new_key_id, "note": "rollback: the new key goes, the old stays"},
        )
        self.vendor.cancel_grace(self.selector, r.old_key_id)
        self.vendor.revoke_key(self.selector, r.new_key_id)
        now = self.ctx.clock()
        self._advance(
            State.ROLLED_BACK,
            step="rollback",
            outcome="succeeded",
            details={
                "key_id": r.old_key_id,
                "revoked_key_id": r.new_key_id,
                "restored_vault_version": r.restored_vault_version,
                "by": r.rolled_back_by,
                "reason": r.rollback_reason,
            },
            completed_at=now,
            needs_attention=False,
            last_error=None,
            policy_state={
                "current_key_id": r.old_key_id,
                "vault_version": r.restored_vault_version,
                "adopted_at": now,
                "attention": None,
            },
        )

    def _outcome(self) -> Outcome:
        r = self.rotation
        if r.state != State.ROLLED_BACK:
            return super()._outcome()
        return Outcome(
            policy=r.policy,
            result=Result.ROLLED_BACK,
            message=(
                f"rolled back to key {r.old_key_id} (Vault version {r.restored_vault_version} "
                f"holds the old secret again); new key {r.new_key_id} revoked; by "
                f"{r.rolled_back_by}: {r.rollback_reason}"
            ),
            rotation_id=r.id,
            state=r.state,
            new_key_id=r.old_key_id,
            vault_version=r.restored_vault_version,
        )


def _live(key: VendorKey | None, now: datetime) -> bool:
    return key is not None and key.active and (key.expires_at is None or key.expires_at > now)


def _old_secret(vault: VaultStore, rotation: RotationRecord) -> Secret:
    """The old secret, read by its Vault version; ``RollbackRefused`` if Vault lost it."""
    version = rotation.restored_vault_version or rotation.vault_base_version
    where = f"{vault.mount}/{rotation.vault_path}"
    if not version:
        raise RollbackRefused(
            f"Vault had no earlier version of {where} when rotation {rotation.id} wrote the new "
            "key, so there is no old secret to put back"
        )
    try:
        found = vault.read(rotation.vault_path, version=version)
    except VaultNotFound:
        found = None
    value = found.field(rotation.vault_field) if found else None
    if value is None:
        raise RollbackRefused(
            f"version {version} of {where}, which held the old secret, was deleted or destroyed "
            f"(or lost its {rotation.vault_field} field): rotator cannot put the old key back. "
            f"Undelete it ('vault kv undelete -versions={version}') if it was only deleted"
        )
    return value


def _nothing_in_grace(store: AuditStore, name: str) -> str:
    history = store.rotations_for(name)
    if not history:
        return f"policy {name} has no rotation to roll back"
    last = history[-1]
    when = format_time(last.completed_at) if last.completed_at else "an unknown time"
    if last.state == State.COMPLETED:
        return (
            f"no rotation of {name} is in grace: the last one ({last.id}) completed at {when} "
            f"and revoked its old key {last.old_key_id or ''}".rstrip()
        )
    return f"no rotation of {name} is in grace: the last one ({last.id}) ended {last.state}"


def _instead(name: str) -> str:
    return (
        f"rollback only goes back to an old key that is still live. To replace the current key, "
        f"run 'rotator rotate now {name}' (with --emergency if it leaked)"
    )
