"""The rotation protocol for one policy, one step per method, in the order they run.

plan -> mint -> store -> verify -> grace -> revoke -> finish

Each step persists its intent before the external call and its result after
it, so a process killed anywhere leaves a row from which ``resume`` finishes
the rotation or rolls it back:

- killed while minting (key id unknown): keys bearing the rotation's name are
  revoked as orphans and the key is minted again; a regenerate is repeated;
- killed after minting, before the Vault write is recorded: the Vault
  version is recognised as ours by the secret's fingerprint, or else the lost
  key is revoked and minted again;
- killed after storing: verification continues; killed in grace or while
  revoking: the revoke continues.

A regenerate kills the old secret at once, so its new secret goes to Vault
before the database hears of it (Vault's labels on the version say whose it
is) and is held in memory while the Vault write is retried.

Every vendor and Vault call is preceded by a check that this process still
holds the policy's lock, and every row update is fenced: a process that lost
the policy to another stops (``lost_lock``) and writes nothing more.

The old key is only revoked once the new one is verified in Vault.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Unpack

from rotator.audit.records import EventOutcome, Step
from rotator.audit.rotation_state import PolicyStateChanges, StepChanges
from rotator.audit.store import AuditStore, RotationRecord
from rotator.config.loader import Policy
from rotator.config.usage import RevokeWhenUnused
from rotator.durations import format_duration
from rotator.engine.steps import Steps
from rotator.errors import (
    AuditStoreError,
    LockLost,
    RotationFailed,
    RotatorError,
    SecretLost,
    VaultCasConflict,
    VaultError,
    VendorAuthError,
    VendorConflict,
    VendorRateLimited,
)
from rotator.log import get_logger
from rotator.providers.base import MintedKey, Provider, Strategy, VendorKey
from rotator.secret import Secret
from rotator.timestamps import format_time
from rotator.vault_metadata import metadata_key
from rotator.vocabulary import Outcome, Result, State

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from rotator.engine.lock import Lease
    from rotator.vault import VaultStore

log = get_logger("rotator.engine")


def fingerprint(rotation_id: str, secret: Secret) -> str:
    """A salted SHA-256 of ``secret``: recognises our own Vault write, reveals nothing."""
    return hashlib.sha256(f"{rotation_id}:{secret.reveal()}".encode()).hexdigest()


def _vault_may_recover(exc: Exception) -> bool:
    """Worth another try: Vault sealed, unreachable, refusing or failing; not a conflict."""
    return isinstance(exc, VaultError) and not isinstance(exc, VaultCasConflict)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with full jitter between runs: 30 s, 1 min, 2 min ... at most 1 h."""
    ceiling = min(30 * 2 ** max(attempts - 1, 0), 3600)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


class Written(NamedTuple):
    """A secret written to Vault: the version it replaced and its own."""

    base: int
    version: int


@dataclass
class RotationContext:
    policy: Policy
    provider: Provider[Any, Any]
    vault: VaultStore
    store: AuditStore
    clock: Callable[[], datetime]
    max_attempts: int
    lease: Lease
    #: After a 401: re-read the provider's ``vault:`` token; whether it changed (and is used).
    reread_credential: Callable[[], bool]


def unexpected(exc: Exception, where: str) -> str:
    """Words for an exception rotator did not foresee: its type only, since its text may
    quote vendor data (a secret, even)."""
    return (
        f"unexpected {type(exc).__module__}.{type(exc).__qualname__} {where} (its text is "
        "withheld: it may quote vendor data; this is a bug or an answer rotator cannot read)"
    )


def lost_lock(
    policy: str, exc: LockLost, store: AuditStore, rotation: RotationRecord | None = None
) -> Outcome:
    """Stop: another process may own the policy now. Only an event is written, no row."""
    state = rotation.state if rotation else None
    rotation_id = rotation.id if rotation else None
    log.warning("policy lock lost", policy=policy, rotation_id=rotation_id, error=str(exc))
    try:
        store.record_event(
            policy,
            "fence",
            "lost_lock",
            rotation_id=rotation_id,
            details={"state": state, "error": str(exc)},
        )
    except AuditStoreError as unrecorded:
        log.error("lost_lock not recorded", policy=policy, error=str(unrecorded))
    return Outcome(policy, Result.LOST_LOCK, str(exc), rotation_id=rotation_id, state=state)


class RotationRun(Steps):
    """Drives one rotation record forward until it finishes, waits, or fails.

    Which step comes next is the table in ``steps.py``, which the dry run walks too.
    """

    def __init__(self, ctx: RotationContext, rotation: RotationRecord) -> None:
        self.ctx = ctx
        self.rotation = rotation
        self.policy = ctx.policy
        self.selector = ctx.policy.selector
        # The new secret, while this process has it; after a crash it is read back from Vault.
        self._secret: Secret | None = None
        # Why this run extended grace, when it did: the outcome says consumers have not moved.
        self._extended: str | None = None

    # -- driver ---------------------------------------------------------------

    def run(self) -> Outcome:
        credential_reread = False
        while True:
            try:
                while (step := self.step_for(State(self.rotation.state))) is not None:
                    before = (self.rotation.state, self.rotation.updated_at)
                    step()
                    if (self.rotation.state, self.rotation.updated_at) == before:
                        break  # the step decided to wait (grace not over)
            except LockLost as exc:
                return self._lost_lock(exc)
            except VendorAuthError as exc:
                # Another replica may have rotated the provider's own token: read it again, once.
                if exc.status == 401 and not credential_reread and self.ctx.reread_credential():
                    credential_reread = True
                    continue
                return self._failed_or_lost(exc)
            except Exception as exc:  # whatever went wrong, this attempt failed
                return self._failed_or_lost(exc)
            return self._outcome()

    def _failed_or_lost(self, exc: Exception) -> Outcome:
        try:
            return self._failed(exc)
        except LockLost as lost:
            return self._lost_lock(lost)

    def _lost_lock(self, exc: LockLost) -> Outcome:
        return lost_lock(self.policy.name, exc, self.ctx.store, self.rotation)

    # -- the lock, re-checked before every vendor and Vault call -----------------

    @property
    def vendor(self) -> Provider[Any, Any]:
        """The provider, once this process is known to still hold the policy."""
        self._confirm_lease()
        return self.ctx.provider

    @property
    def vault(self) -> VaultStore:
        """The Vault store, once this process is known to still hold the policy."""
        self._confirm_lease()
        return self.ctx.vault

    def _confirm_lease(self) -> None:
        if self.ctx.lease.confirm():
            self._reclaim()

    def _reclaim(self) -> None:
        """The lock was free for a while: go on only if nobody took the rotation meanwhile."""
        self.rotation = self.ctx.store.claim_rotation(self.rotation)

    def _outcome(self) -> Outcome:
        r = self.rotation
        result = {
            State.COMPLETED: Result.COMPLETED,
            State.ROLLED_BACK: Result.ROLLED_BACK,
            State.GRACE: Result.WAITING,
        }.get(State(r.state), Result.FAILED)
        if result is Result.WAITING and r.needs_attention:
            result = Result.NEEDS_ATTENTION  # held past grace: a person decides
        elif result is Result.WAITING and self._extended:
            result = Result.GRACE_EXTENDED
        if result is Result.GRACE_EXTENDED:
            assert r.grace_until is not None
            message = f"{self._extended}; grace extended to {format_time(r.grace_until)}"
        elif result is Result.WAITING:
            assert r.grace_until is not None
            message = (
                f"new key {r.new_key_id} in Vault; old key revoked after "
                f"{format_time(r.grace_until)}"
            )
        elif result is Result.COMPLETED:
            message = f"rotated to key {r.new_key_id} (Vault version {r.vault_version})"
        else:
            message = r.last_error or f"stopped in state {r.state}"
        return Outcome(
            policy=r.policy,
            result=result,
            message=message,
            rotation_id=r.id,
            state=r.state,
            new_key_id=r.new_key_id,
            vault_version=r.vault_version,
            grace_until=r.grace_until,
        )

    def _failed(self, exc: Exception) -> Outcome:
        """Count a failed attempt, back off, flag after too many; the outcome is always returned.

        Any exception counts, not only rotator's own: an unexpected one (a vendor's
        answer no parser foresaw, a bug) is named by its type only, since its text may
        quote vendor data.
        """
        attempts = self.rotation.attempts + 1
        # Repeating a rotation that lost its secret would regenerate again: a person decides.
        # Nor is another writer's Vault version ever overwritten by retrying.
        attention = attempts >= self.ctx.max_attempts or isinstance(
            exc, SecretLost | VaultCasConflict
        )
        if isinstance(exc, RotatorError):
            message = str(exc)
        else:
            message = unexpected(exc, f"in state {self.rotation.state}")
            message += "; counted as a failed attempt and retried with backoff"
        try:
            self._advance(
                self.rotation.state,
                step="attention" if attention else "retry",
                outcome="failed",
                details={"error": message, "error_type": type(exc).__name__, "attempts": attempts},
                attempts=attempts,
                last_error=message,
                needs_attention=attention,
                next_attempt_at=self._next_attempt(exc, attempts),
            )
        except AuditStoreError as unrecorded:
            # The state written before the failing step stands; the next run resumes from it.
            message = f"{message}; the audit database could not record it either ({unrecorded})"
        log.error(
            "rotation step failed",
            policy=self.policy.name,
            rotation_id=self.rotation.id,
            state=self.rotation.state,
            attempts=attempts,
            needs_attention=attention,
            error=message,
        )
        return Outcome(
            policy=self.policy.name,
            result=Result.NEEDS_ATTENTION if attention else Result.FAILED,
            message=message,
            rotation_id=self.rotation.id,
            state=self.rotation.state,
        )

    def _next_attempt(self, exc: Exception, attempts: int) -> datetime:
        """The backoff for ``attempts``, but never before a vendor said its budget resets."""
        now = self.ctx.clock()
        after_backoff = now + retry_delay(attempts)
        if not isinstance(exc, VendorRateLimited):
            return after_backoff
        if exc.retry_at is not None:
            return max(after_backoff, exc.retry_at)
        if exc.retry_after is not None:
            return max(after_backoff, now + timedelta(seconds=exc.retry_after))
        return after_backoff

    def _advance(
        self,
        state: State,
        *,
        step: Step,
        outcome: EventOutcome,
        details: dict[str, Any] | None = None,
        policy_state: PolicyStateChanges | None = None,
        **changes: Unpack[StepChanges],
    ) -> None:

        def write(session: Connection | None) -> RotationRecord:
            return self.ctx.store.update_rotation(
                self.rotation,
                step=step,
                outcome=outcome,
                details=details,
                policy_state=policy_state,
                session=session,
                state=state,
                **changes,
            )

        # On the lock's session: the write confirms the lock for the call after it.
        self.rotation = self.ctx.lease.write(write, retaken=self._reclaim)
        log.info(
            f"{step} {outcome}",
            policy=self.policy.name,
            rotation_id=self.rotation.id,
            state=state,
            **(details or {}),
        )

    # -- mint -----------------------------------------------------------------

    def mint(self) -> None:
        """Ask the vendor for the new key; the intent is on record before the call.

        Vault is asked first whether the new secret could be stored (unsealed, token
        valid, the policy's path and metadata writable): if not, nothing happens at the
        vendor.
        """
        r = self.rotation
        regenerate = r.strategy == Strategy.REGENERATE
        staging = [self._staging_path] if self._caller_chooses else []
        self.vault.require_writable(self._path, *staging)
        self._advance(
            State.MINTING,
            step="mint",
            outcome="started",
            details={
                "operation": "regenerate" if regenerate else "create",
                "key_id": r.old_key_id if regenerate else None,
                "key_name": None if regenerate else r.new_key_name,
            },
        )
        if regenerate:
            self._regenerate()
            return
        assert r.new_key_name is not None
        chosen = self._staged_secret() if self._caller_chooses else None
        try:
            minted = self.vendor.create_key(
                self.selector, r.new_key_name, chosen, replacing=r.old_key_id
            )
        except VendorConflict:
            # The name is this rotation's own: an earlier try of this very create went through.
            found = self._keys_named(r.new_key_name)
            if not found or chosen is None:
                raise
            minted = MintedKey(found[0], chosen)
        self._minted(minted)

    def _regenerate(self) -> None:
        """Regenerate in place: the old secret dies at the vendor, the new one is all there is.

        So it goes to Vault before the database hears of it, and its Vault write is
        retried while it is held in memory (``vault.write_retry_for``): an outage of
        Vault or of the audit database must not cost the only working secret.
        """
        r = self.rotation
        assert r.old_key_id is not None
        minted = self.vendor.regenerate_key(self.selector, r.old_key_id)
        self._learn_secret(minted.secret)
        try:
            # Recorded first when possible: the fingerprint recognises the Vault write later.
            self._minted(minted)
            self._advance(
                State.MINTED,
                step="store",
                outcome="started",
                details={
                    "vault_path": self._path,
                    "retried_for": format_duration(self.ctx.vault.config.write_retry_for),
                },
            )
            recorded = True
        except AuditStoreError as exc:
            log.error(
                "audit database failed after a regenerate; storing the secret in Vault first",
                policy=self.policy.name,
                rotation_id=r.id,
                error=str(exc),
            )
            recorded = False
        base, version = self._write_while_held(minted)
        if not recorded:
            self._minted(minted)
        self._record_stored(version, base_version=base)

    def _write_while_held(self, minted: MintedKey) -> Written:
        """Store a regenerated secret and label it; the version before and the one written.

        Any Vault failure but a conflicting write is retried with backoff until
        ``vault.write_retry_for`` has passed; then the secret is lost (``SecretLost``).
        """
        import stamina

        window = self.ctx.vault.config.write_retry_for
        written: Written | None = None
        try:
            for attempt in stamina.retry_context(
                on=_vault_may_recover,
                attempts=None if window else 1,
                timeout=window.total_seconds() or None,
                wait_initial=0.5,
                wait_max=15.0,
            ):
                with attempt:
                    if written is None:
                        base = self.vault.current_version(self._path)
                        field = self.rotation.vault_field
                        written = Written(
                            base,
                            self.vault.write_field(self._path, field, minted.secret, cas=base),
                        )
                    self._label(written.version, minted.key.key_id)
        except VaultError as exc:
            if written is not None:
                # The secret is in Vault, only rotator's labels are missing: not lost.
                return written
            why = (
                "Vault refused it: rotator does not overwrite another writer"
                if isinstance(exc, VaultCasConflict)
                else f"Vault did not take it within {format_duration(window)}"
            )
            raise SecretLost(
                f"key {minted.key.key_id} was regenerated at the vendor, but {why} ({exc}); the "
                "old secret no longer works and the new one is gone, so consumers are down: "
                f"regenerate again once Vault is writable: 'rotator rotate now {self.policy.name}'"
            ) from None
        assert written is not None
        return written

    def _minted(self, minted: MintedKey) -> None:
        self._learn_secret(minted.secret)
        self._advance(
            State.MINTED,
            step="mint",
            outcome="succeeded",
            details={"key_id": minted.key.key_id},
            new_key_id=minted.key.key_id,
            new_secret_fingerprint=fingerprint(self.rotation.id, minted.secret),
        )

    def _learn_secret(self, secret: Secret) -> None:
        self._secret = secret
        if self.policy.self_rotating:
            self.ctx.provider.use_token(secret)

    def recover_minting(self) -> None:
        """Killed during the vendor call: the secret, if issued, is lost. Clean up, mint again.

        When rotator chose the secret itself, it is staged in Vault and nothing is
        lost: a key bearing this rotation's name is adopted instead.
        """
        r = self.rotation
        if r.strategy == Strategy.REGENERATE and self._adopt_stored_regeneration():
            return
        if r.strategy != Strategy.REGENERATE:
            staged = self._read_staged() if self._caller_chooses else None
            for key in self._keys_named(r.new_key_name):
                if staged is not None:
                    self._minted(MintedKey(key, staged))
                    return
                self.vendor.revoke_key(self.selector, key.key_id)
                self._advance(
                    State.MINTING,
                    step="recover",
                    outcome="revoked_orphan",
                    details={"key_id": key.key_id, "reason": "secret lost in an interrupted mint"},
                )
        self.mint()

    def _adopt_stored_regeneration(self) -> bool:
        """Whether Vault's current version is this rotation's regenerated secret, now recorded.

        A regenerated secret reaches Vault before the database: if the database write
        failed, Vault's labels (this rotation's id on the current version) say so.
        """
        r = self.rotation
        current = self.vault.read(self._path)
        if current is None:
            return False
        labels = current.custom_metadata
        value = current.field(r.vault_field)
        if (
            value is None
            or labels.get(metadata_key(r.vault_field, "rotation_id")) != r.id
            or labels.get(metadata_key(r.vault_field, "version")) != str(current.version)
        ):
            return False
        assert r.old_key_id is not None
        self._minted(MintedKey(VendorKey(key_id=r.old_key_id), value))
        self._record_stored(current.version)
        return True

    # -- staging (vendors that accept a secret chosen by rotator) ---------------

    @property
    def _caller_chooses(self) -> bool:
        return self.ctx.provider.capabilities.caller_chooses_secret

    @property
    def _staging_path(self) -> str:
        prefix = self.ctx.vault.config.staging_prefix.strip("/")
        return f"{prefix}/{self.policy.name}"

    def _read_staged(self) -> Secret | None:
        staged = self.vault.read(self._staging_path)
        if staged is None or staged.custom_metadata.get("rotation_id") != self.rotation.id:
            return None
        return staged.field("secret")

    def _staged_secret(self) -> Secret:
        """This rotation's secret, generated once and kept in Vault before the vendor sees it."""
        staged = self._read_staged()
        if staged is not None:
            return staged
        secret = self.ctx.provider.generate_secret()
        path = self._staging_path
        self.vault.write_field(path, "secret", secret, cas=self.vault.current_version(path))
        self.vault.update_metadata(path, {"rotation_id": self.rotation.id})
        self._advance(
            State.MINTING,
            step="stage",
            outcome="succeeded",
            details={"vault_path": path, "note": "secret generated by rotator, staged in Vault"},
        )
        return secret

    def _discard_staged(self) -> None:
        if self._caller_chooses:
            self.vault.destroy(self._staging_path)

    def _keys_named(self, name: str | None) -> list[VendorKey]:
        return [k for k in self.vendor.list_keys(self.selector) if name and k.name == name]

    # -- store ----------------------------------------------------------------

    def store_or_recover(self) -> None:
        if self._secret is not None:
            self.store(self._secret)
            return
        r = self.rotation
        current = self.vault.read(self._path)
        value = current.field(r.vault_field) if current else None
        if current and value and fingerprint(r.id, value) == r.new_secret_fingerprint:
            self._learn_secret(value)
            self._stored(current.version)
            return
        staged = self._read_staged() if self._caller_chooses else None
        if staged is not None:
            self._learn_secret(staged)
            self.store(staged)
            return
        # The Vault write never happened and the secret is gone: this key is an orphan.
        if r.strategy != Strategy.REGENERATE and r.new_key_id:
            self.vendor.revoke_key(self.selector, r.new_key_id)
            self._advance(
                State.PLANNED,
                step="recover",
                outcome="revoked_orphan",
                details={"key_id": r.new_key_id, "reason": "secret lost before the Vault write"},
                new_key_id=None,
                new_secret_fingerprint=None,
            )
        else:
            self._advance(
                State.PLANNED,
                step="recover",
                outcome="regenerate_again",
                details={"key_id": r.new_key_id, "reason": "secret lost before the Vault write"},
            )

    def store(self, secret: Secret) -> None:
        """Write the new secret as a new Vault version, check-and-set on the version read.

        A conflict means someone else wrote the secret meanwhile: that is drift, and
        is never overwritten. The rotation stops, flagged for a person.
        """
        base, keep = self.vault.newest(self._path)
        self._advance(
            State.MINTED,
            step="store",
            outcome="started",
            details={"vault_path": self._path, "cas": base},
            vault_base_version=base,
        )
        try:
            version = self.vault.write_field(
                self._path, self.rotation.vault_field, secret, cas=base, keep=keep
            )
        except VaultCasConflict as exc:
            raise VaultCasConflict(
                f"{exc}; then run 'rotator rotate now {self.policy.name}' (the unstored new "
                "key is revoked and a fresh one minted)"
            ) from None
        self._stored(version)

    def _stored(self, version: int) -> None:
        self._label(version, self.rotation.new_key_id)
        self._record_stored(version)

    def _label(self, version: int, key_id: str | None) -> None:
        """Record in the secret's custom_metadata which key and rotation ``version`` holds."""
        r = self.rotation
        field = r.vault_field
        self.vault.update_metadata(
            self._path,
            {
                metadata_key(field, "key_id"): key_id or "",
                metadata_key(field, "rotation_id"): r.id,
                metadata_key(field, "rotated_at"): self.ctx.clock().isoformat(),
                metadata_key(field, "version"): str(version),
                metadata_key(field, "policy"): r.policy,
            },
        )

    def _record_stored(self, version: int, *, base_version: int | None = None) -> None:
        """Record that Vault's ``version`` holds the new key (``base_version``: the one before,
        where it was only learnt now, by a regenerate that could not record it first)."""
        r = self.rotation
        changes: StepChanges = {"vault_version": version}
        if base_version is not None:
            changes["vault_base_version"] = base_version
        self._advance(
            State.STORED,
            step="store",
            outcome="succeeded",
            details={"vault_path": self._path, "vault_version": version, "key_id": r.new_key_id},
            **changes,
        )
        self._discard_staged()

    @property
    def _path(self) -> str:
        return self.rotation.vault_path

    def _new_secret(self) -> Secret:
        if self._secret is not None:
            return self._secret
        stored = self.vault.read(self._path, version=self.rotation.vault_version)
        value = stored.field(self.rotation.vault_field) if stored else None
        if value is None:
            raise RotationFailed(
                f"Vault version {self.rotation.vault_version} of {self._path} lost its "
                f"{self.rotation.vault_field} field; someone deleted it: check Vault"
            )
        self._learn_secret(value)
        return value

    # -- verify ---------------------------------------------------------------

    def verify(self) -> None:
        """Prove the new key is usable where the vendor allows it; roll back if not."""
        r = self.rotation
        caps = self.ctx.provider.capabilities
        if not caps.can_verify:
            self._advance(
                State.VERIFIED,
                step="verify",
                outcome="skipped",
                details={"reason": f"{self.policy.provider_type} offers no verification"},
            )
            return
        assert r.new_key_id is not None
        minted = MintedKey(VendorKey(key_id=r.new_key_id, name=r.new_key_name), self._new_secret())
        if self.vendor.verify_key(self.selector, minted):
            self._advance(
                State.VERIFIED,
                step="verify",
                outcome="succeeded",
                details={"key_id": r.new_key_id, "check": caps.verification},
            )
            return
        if r.strategy == Strategy.REGENERATE:
            # The old secret died with the regenerate: the new one is all there is.
            raise RotationFailed(
                f"the regenerated key {r.new_key_id} failed verification and the old secret "
                "no longer exists; Vault keeps the new one: check the key at the vendor"
            )
        self._advance(
            State.ROLLING_BACK,
            step="verify",
            outcome="failed",
            details={"key_id": r.new_key_id, "check": caps.verification},
        )

    def roll_back(self) -> None:
        """Restore the previous Vault version as current and revoke the new key."""
        r = self.rotation
        current_version = self.vault.current_version(self._path)
        restored: int | None = None
        previous = (
            self.vault.read(self._path, version=r.vault_base_version)
            if r.vault_base_version
            else None
        )
        old_value = previous.field(r.vault_field) if previous else None
        if old_value is not None and self.policy.self_rotating:
            # Rotator's own token goes back to the old key: the new one is revoked next.
            self.ctx.provider.use_token(old_value)
        if current_version == r.vault_version and old_value is not None:
            restored = self.vault.write_field(
                self._path, r.vault_field, old_value, cas=current_version
            )
            self.vault.update_metadata(
                self._path,
                {
                    metadata_key(r.vault_field, "key_id"): r.old_key_id or "",
                    metadata_key(r.vault_field, "version"): str(restored),
                },
            )
        if r.new_key_id:
            self.vendor.revoke_key(self.selector, r.new_key_id)
        self._discard_staged()
        self._advance(
            State.ROLLED_BACK,
            step="rollback",
            outcome="succeeded",
            details={
                "restored_vault_version": restored,
                "from_vault_version": r.vault_base_version,
                "revoked_key_id": r.new_key_id,
            },
            completed_at=self.ctx.clock(),
            last_error="the new key failed verification; the previous key was restored",
        )

    # -- grace, revoke, finish ------------------------------------------------

    def start_grace(self) -> None:
        """Persist when the old key may go; vendors with key expiry enforce it too."""
        r = self.rotation
        if r.strategy == Strategy.REGENERATE or not r.old_key_id:
            reason = "regenerated in place" if r.old_key_id else "no previous key known"
            self.finish(reason)
            return
        grace = timedelta(0) if r.emergency else self.policy.grace_period
        grace_until = self.ctx.clock() + grace
        self.vendor.prepare_grace(self.selector, r.old_key_id, grace_until)
        calls = None
        if self.policy.revoke_when_unused is not None and not r.emergency:
            # Counted now so that an extension can say how many calls came after the switch.
            calls = _total_calls(self.vendor.find_key(self.selector, r.old_key_id))
        self._advance(
            State.GRACE,
            step="grace",
            outcome="started",
            details={"old_key_id": r.old_key_id, "grace_until": grace_until.isoformat()},
            grace_until=grace_until,
            grace_started_at=self.ctx.clock(),
            grace_original_until=grace_until,
            old_key_calls_at_grace=calls,
        )

    def revoke(self) -> None:
        """After grace, revoke the old key; retried until done, the id is never dropped."""
        r = self.rotation
        assert r.grace_until is not None
        assert r.old_key_id is not None
        self._note_first_use()
        if self.ctx.clock() < r.grace_until:
            return
        note = None
        if self.policy.revoke_when_unused is not None and not r.emergency:
            note = self._old_key_quiet(self.policy.revoke_when_unused)
            if note is None:
                return
        self._advance(
            State.GRACE,
            step="revoke",
            outcome="started",
            details={"key_id": r.old_key_id, "note": note or None},
        )
        self.vendor.revoke_key(self.selector, r.old_key_id)
        self.finish(f"old key {r.old_key_id} revoked")

    def _note_first_use(self) -> None:
        """Record the new key's first use the vendor reports, once: consumers are moving.

        One list call per run in grace, until the vendor reports a use (vendors that
        report usage only).
        """
        r = self.rotation
        if r.new_key_first_used_at or not r.new_key_id:
            return
        if not self.ctx.provider.capabilities.reports_usage:
            return
        key = self.vendor.find_key(self.selector, r.new_key_id)
        if key is None or key.last_used_at is None:
            return
        self._advance(
            State.GRACE,
            step="grace",
            outcome="first_used",
            details={"key_id": r.new_key_id, "used_at": format_time(key.last_used_at)},
            new_key_first_used_at=key.last_used_at,
        )

    def _old_key_quiet(self, usage: RevokeWhenUnused) -> str | None:
        """Whether the old key may go now: a note for the revoke, or None to keep it.

        A use since the new key was stored within ``quiet`` of now extends grace by
        ``quiet``, until ``max_extension`` past the original grace end is spent; then
        ``then`` decides. Every decision is on the rotation row, so a restart goes on.
        """
        r = self.rotation
        assert r.old_key_id is not None
        assert r.grace_until is not None
        now = self.ctx.clock()
        key = self.vendor.find_key(self.selector, r.old_key_id)
        used = key.last_used_at if key else None
        # Vendors report whole seconds: a use in the second grace began counts as after it.
        started = (r.grace_started_at or datetime.min.replace(tzinfo=now.tzinfo)).replace(
            microsecond=0
        )
        if used is None or used < started or now - used >= usage.quiet:
            return f"old key not used in the last {format_duration(usage.quiet)} of grace"
        calls = _total_calls(key)
        seen = f"old key {r.old_key_id} used at {format_time(used)}"
        if calls is not None and r.old_key_calls_at_grace is not None:
            seen += f", {calls - r.old_key_calls_at_grace} calls since the new key was stored"
        elif calls is not None:
            seen += f", {calls} calls in total"
        original = r.grace_original_until or r.grace_until
        limit = original + usage.max_extension
        if now < limit:
            until = min(now + usage.quiet, limit)
            self._extended = f"{seen}; consumers have not moved to the new key"
            self._advance(
                State.GRACE,
                step="grace",
                outcome="extended",
                details={
                    "old_key_id": r.old_key_id,
                    "message": self._extended,
                    "grace_until": until.isoformat(),
                },
                grace_until=until,
                grace_original_until=original,
            )
            return None
        spent = f"max_extension {format_duration(usage.max_extension)} spent"
        if usage.then == "revoke":
            return f"{seen}; {spent}, revoked anyway"
        if not r.needs_attention:
            message = (
                f"old key {r.old_key_id} kept: last used at {format_time(used)}, after grace "
                f"and {spent}; move its consumers to the new key in Vault: once the old key "
                f"has gone unused for {format_duration(usage.quiet)}, 'rotator rotate now "
                f"{self.policy.name}' revokes it"
            )
            self._advance(
                State.GRACE,
                step="grace",
                outcome="held",
                details={"old_key_id": r.old_key_id, "message": message},
                needs_attention=True,
                last_error=message,
            )
        return None

    def finish(self, note: str) -> None:
        r = self.rotation
        now = self.ctx.clock()
        self._advance(
            State.COMPLETED,
            step="finish",
            outcome="succeeded",
            details={"key_id": r.new_key_id, "vault_version": r.vault_version, "note": note},
            completed_at=now,
            needs_attention=False,
            last_error=None,
            policy_state={
                "current_key_id": r.new_key_id,
                "vault_version": r.vault_version,
                "last_rotated_at": now,
                "last_rotation_id": r.id,
                "attention": None,
            },
        )


def _total_calls(key: VendorKey | None) -> int | None:
    """The key's call count, where the vendor reports one (H2O GPTe's ``total_calls``)."""
    calls = key.extra.get("total_calls") if key else None
    return calls if isinstance(calls, int) else None
