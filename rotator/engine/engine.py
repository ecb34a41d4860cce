"""The engine: runs the rotation protocol for policies, under the per-policy lock.

``rotate_now`` and ``rotate_if_due`` (the daemon, `rotate due` and `rotate now` call the same
methods) share one code path; ``dry_run`` walks the same state-to-step table
(engine/steps.py) with no call made, for ``plan`` and ``--dry-run``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from rotator.audit.actor import current_actor
from rotator.audit.events import DetailValue
from rotator.audit.records import PolicyState
from rotator.audit.rotation_state import PolicyRows, StepChanges
from rotator.audit.store import AuditStore, RotationRecord, utcnow
from rotator.config.credentials import Credential, VaultReference
from rotator.config.loader import Config, Policy
from rotator.engine.dryrun import DryRun, Facts, Line, shown
from rotator.engine.inspection import inspect_policy
from rotator.engine.lock import Lease, PolicyLocks
from rotator.engine.pause import FORCE_HINT, held, hold_reason
from rotator.engine.protocol import RotationContext, RotationRun, lost_lock, unexpected
from rotator.engine.reconcile import Applied, ReconcilePlan, Reconciler
from rotator.engine.rollback import (
    RollbackRun,
    RollbackTarget,
    describe_rollback,
    request_rollback,
    rollback_target,
)
from rotator.engine.schedule import due_window, not_due
from rotator.engine.steps import Start, rotate_now_start
from rotator.errors import (
    ConfigError,
    LockLost,
    RotationFailed,
    RotatorError,
    VaultError,
    VendorError,
)
from rotator.log import bound_log_context, get_logger
from rotator.notify import Notifier
from rotator.providers.base import Provider, Strategy
from rotator.providers.request import PLANNED_SECRET
from rotator.recorder import provider_labels, recorder
from rotator.secret import Secret, scrub
from rotator.timestamps import format_time
from rotator.vault_metadata import metadata_key
from rotator.vocabulary import DEFAULT_MAX_REVOCATIONS, Outcome, Result, State

if TYPE_CHECKING:
    from rotator.vault import VaultStore

DEFAULT_MAX_ATTEMPTS = 5
#: What starts a run: ``rotate now``, or the schedule (daemon, ``rotate due``).
Trigger = Literal["now", "schedule"]

log = get_logger("rotator.engine")


class Engine:
    """Rotates the policies of one configuration."""

    def __init__(
        self,
        config: Config,
        store: AuditStore,
        vault: VaultStore | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.config = config
        self.store = store
        self._vault = vault
        self._vault_lock = threading.Lock()
        self.clock = clock
        self.max_attempts = max_attempts
        self.locks = PolicyLocks(store.engine)
        self._providers: dict[str, Provider[Any, Any]] = {}
        self._providers_lock = threading.Lock()
        self.notifier = Notifier(config.webhooks, self.resolve_credential)

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        workers: int | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> Engine:
        """Connect to the audit database (schema must be current); Vault on first use."""
        from rotator.chain_vault import chain_trust

        store = AuditStore.open(config.database_url, workers=workers or config.daemon.concurrency)
        store.require_current_schema()
        engine = cls(config, store, clock=clock)
        # The audit key comes through the engine's Vault client, whose token it keeps alive.
        store.trust = chain_trust(config, lambda: engine.vault)
        return engine

    @property
    def vault(self) -> VaultStore:
        """The Vault client, made on first use: a run with nothing due never needs it."""
        with self._vault_lock:
            if self._vault is None:
                from rotator.vault import VaultStore

                token = self.config.vault_token
                self._vault = VaultStore(
                    self.config.vault, token if isinstance(token, Secret) else None
                )
            return self._vault

    def vault_for(self, policy: Policy) -> VaultStore:
        """The Vault store on the policy's KV v2 mount (its own, else the global one)."""
        return self.vault.for_mount(self._mount(policy))

    def close(self) -> None:
        self.reset_providers()
        self.store.close()

    def reconfigure(self, config: Config) -> None:
        """Work with ``config`` from now on: every client built from the old one is dropped.

        The audit database stays as opened (a new ``database.url`` needs a restart); a
        rotation already running finishes with the clients it started with.
        """
        with self._vault_lock:
            self._vault = None
        self.config = config
        self.notifier = Notifier(config.webhooks, self.resolve_credential)
        with self._providers_lock:
            # Let go, not closed: a rotation still running holds its provider and finishes
            # with it; the client's connections close once it is garbage.
            self._providers = {}

    def reset_providers(self) -> None:
        """Close and drop the cached provider clients (the engine is closing)."""
        with self._providers_lock:
            for provider in self._providers.values():
                provider.close()
            self._providers.clear()

    def resolve_credential(self, credential: Credential) -> Secret:
        if isinstance(credential, VaultReference):
            return self.vault.resolve(credential)
        return credential

    def _reread_credential(self, policy: Policy) -> bool:
        """Read a ``vault:`` provider token again; True if it changed and is used from now on.

        Another replica may have rotated it (a policy rotating rotator's own token).
        """
        credential = policy.provider_settings.token
        if not isinstance(credential, VaultReference):
            return False
        fresh = self.vault.resolve(credential)
        provider = self.provider_for(policy)
        if fresh.reveal() == provider.token.reveal():
            return False
        provider.use_token(fresh)
        return True

    def policy(self, name: str) -> Policy:
        try:
            return self.config.policies[name]
        except KeyError:
            known = ", ".join(sorted(self.config.policies)) or "none"
            raise ConfigError(
                f"no policy named {name!r} in {self.config.source} (known: {known})"
            ) from None

    def provider_for(self, policy: Policy) -> Provider[Any, Any]:
        """The provider of ``policy``, its token resolved (from Vault if referenced)."""
        with self._providers_lock:
            provider = self._providers.get(policy.provider_name)
            if provider is None:
                token = self.resolve_credential(policy.provider_settings.token)
                provider = policy.provider_class(policy.provider_settings, token)
                self._providers[policy.provider_name] = provider
            return provider

    # -- entry points ---------------------------------------------------------

    def rotate_now(self, name: str, *, emergency: bool = False, force: bool = False) -> Outcome:
        return self._reported(
            name, lambda: self._rotate_now(name, emergency=emergency, force=force)
        )

    def hold(self, name: str) -> str | None:
        """Why ``name`` is held (paused, or ``enabled: false``); None when it may rotate."""
        from rotator.audit.pauses import pause_in_force

        policy = self.policy(name)
        if not policy.enabled:
            return hold_reason(False, None)
        return hold_reason(True, pause_in_force(self.store, name, self.clock()))

    def _read_rows(self, name: str, lease: Lease) -> PolicyRows:
        """The policy's pause, unfinished rotation and state, read in one statement on its
        lock's session: while the lock is held, no other rotator works on the rotation or moves
        the current key, and the read proves the lock for the next check."""
        return lease.read(lambda session: self.store.policy_rows(name, session=session))

    def _hold_reason(self, policy: Policy, rows: PolicyRows) -> str | None:
        """As ``hold``, from rows already read."""
        return hold_reason(policy.enabled, rows.pause_at(self.clock()))

    def holds(self) -> dict[str, str]:
        """Every configured policy that is held now, with why (one database read)."""
        from rotator.audit.pauses import pauses_in_force

        pauses = pauses_in_force(self.store, self.clock())
        reasons = {
            name: hold_reason(policy.enabled, pauses.get(name))
            for name, policy in self.config.policies.items()
        }
        return {name: reason for name, reason in reasons.items() if reason}

    def plan_reconcile(
        self, names: Iterable[str], *, max_revocations: int = DEFAULT_MAX_REVOCATIONS
    ) -> ReconcilePlan:
        """What reconcile would do for ``names``: lists and reads, no write anywhere."""
        now = self.clock()
        policies = [self.policy(name) for name in dict.fromkeys(names)]  # a name asked twice
        reports = [(policy, inspect_policy(self, policy, now)) for policy in policies]
        return ReconcilePlan.build(reports, now, max_revocations=max_revocations)

    def reconcile(self, plan: ReconcilePlan, *, force: bool = False) -> Iterator[Applied]:
        """Apply ``plan`` one policy at a time; ``UnsafePlan`` first if it revokes too many."""
        reconciler = Reconciler(
            store=self.store,
            locks=self.locks,
            notify=self.notifier.notify,
            provider_for=self.provider_for,
        )
        return reconciler.apply(plan, force=force)

    def rotate_if_due(self, name: str) -> Outcome:
        return self._reported(name, lambda: self._rotate_if_due(name))

    def _reported(self, name: str, run: Callable[[], Outcome]) -> Outcome:
        """Run one policy's rotation and count, time and notify its outcome.

        Every log line of the run (the HTTP layer's retries too) carries the policy.
        Whatever goes wrong outside a rotation's steps (the lock, the database, a vendor
        answer while planning) is this policy's outcome too, so the other policies go on.
        """
        started = time.monotonic()
        policy = self.policy(name)
        with (
            bound_log_context(policy=name),
            provider_labels(policy.provider_name, policy.provider_type),
        ):
            try:
                outcome = run()
            except LockLost as exc:
                outcome = lost_lock(name, exc, self.store)
            except RotatorError as exc:
                outcome = Outcome(name, Result.FAILED, str(exc))
            except Exception as exc:  # one policy's surprise must not stop the others
                outcome = Outcome(name, Result.FAILED, unexpected(exc, "before any rotation step"))
        if outcome.attempted and outcome.result not in (
            Result.NOT_DUE,
            Result.LOCKED,
            Result.DRY_RUN,
            Result.IN_GRACE,
            Result.PAUSED,
        ):
            labels = (policy.provider_name, policy.provider_type)
            recorder().rotation_timed(*labels, time.monotonic() - started)
            # Waiting in grace (extended or not) is a step of a rotation, counted once it
            # completes.
            if outcome.result not in (Result.WAITING, Result.GRACE_EXTENDED):
                recorder().rotation_ended(name, *labels, outcome.result.value)
            self.notifier.notify(outcome)
        return outcome

    def _rotate_now(self, name: str, *, emergency: bool = False, force: bool = False) -> Outcome:
        """Rotate regardless of schedule; an unfinished rotation is resumed first.

        A rotation still in grace is left alone (``in_grace``: its new key is already
        in Vault); any other unfinished rotation is resumed to its end, as after a
        crash. With ``emergency`` (a key leaked) an unfinished rotation is finished
        with no grace (a rotation in grace has its old key revoked now), then a
        fresh key replaces the current one with no grace period. A held policy is
        only touched with ``force``, and the override is audited.
        """
        policy = self.policy(name)
        with self.locks.hold(name) as lease:
            if not lease:
                return _locked(name)
            rows = self._read_rows(name, lease)
            reason = self._hold_reason(policy, rows)
            if reason is not None:
                if not force:
                    return held(name, reason, hint=FORCE_HINT)
                self.store.record_event(
                    name, "pause", "overridden", details={"hold": reason, "by": current_actor()}
                )
            active = rows.active
            start = rotate_now_start(active, emergency=emergency, now=self.clock())
            if active is None or start is Start.FRESH:
                return self._plan_and_run(
                    policy, lease, rows.state, trigger="now", emergency=emergency
                )
            if start is Start.LEAVE_IN_GRACE:
                return _in_grace(active)
            in_grace = active.state == State.GRACE
            active = self._claim(active, lease)
            if emergency:
                active = self._make_emergency(active)
            outcome = self._run(policy, active, lease)
            if outcome.result is not Result.COMPLETED or not emergency:
                return outcome
            # The finished rotation moved the policy's current key: its state is read again.
            state = lease.read(lambda session: self.store.policy_state(name, session=session))
            fresh = self._plan_and_run(policy, lease, state, trigger="now", emergency=True)
            return _emergency_after_grace(fresh, active) if in_grace else fresh

    def _rotate_if_due(self, name: str) -> Outcome:
        policy = self.policy(name)
        with self.locks.hold(name) as lease:
            if not lease:
                return _locked(name)
            now = self.clock()
            rows = self._read_rows(name, lease)
            active, state = rows.active, rows.state
            refused = self._refused_on_schedule(
                name, active, state, self._hold_reason(policy, rows)
            )
            if refused is not None:
                return refused
            if active is not None:
                if active.next_attempt_at and active.next_attempt_at > now:
                    return Outcome(
                        name,
                        Result.RETRY_PENDING,
                        f"retrying at {format_time(active.next_attempt_at)} (attempt "
                        f"{active.attempts + 1} of {self.max_attempts}) after: {active.last_error}",
                        rotation_id=active.id,
                        state=active.state,
                        attempted=False,
                    )
                return self._run(policy, self._claim(active, lease), lease)
            window = due_window(name, policy.schedule, state, now)
            if not window.contains(now):
                return not_due(name, window)
            return self._plan_and_run(policy, lease, state, trigger="schedule", emergency=False)

    def _refused_on_schedule(
        self,
        name: str,
        active: RotationRecord | None,
        state: PolicyState | None,
        hold: str | None,
    ) -> Outcome | None:
        """Why the schedule leaves ``name`` alone whatever the time: a rotation or a policy
        (``state``) that needs a person, or a hold (``hold``, which stops new rotations only)."""
        if active is not None:
            if not active.needs_attention:
                return None
            return Outcome(
                name,
                Result.NEEDS_ATTENTION,
                f"rotation {active.id} stopped in state {active.state} after "
                f"{active.attempts} attempts ({active.last_error}); fix the cause, then "
                f"run 'rotator rotate now {name}'",
                rotation_id=active.id,
                state=active.state,
                attempted=False,
            )
        if hold is not None:
            return held(name, hold)
        if state is not None and state.attention:
            return Outcome(
                name,
                Result.NEEDS_ATTENTION,
                f"{state.attention}; not rotated on schedule until a person looks: run "
                f"'rotator reconcile {name}', then 'rotator rotate now {name}'",
                attempted=False,
            )
        return None

    def rollback_target(self, name: str) -> RollbackTarget:
        """The rotation ``roll_back`` would send back; ``RollbackRefused`` says why none."""
        policy = self.policy(name)
        return rollback_target(
            policy, self.store, self.provider_for(policy), self.vault_for(policy), self.clock()
        )

    def roll_back(self, name: str, *, reason: str) -> Outcome:
        """Send the rotation in grace back to its old key (or finish a rollback under way).

        Checked again under the policy's lock; ``RollbackRefused`` (nothing changed)
        when there is no live old key to go back to.
        """
        policy = self.policy(name)
        with self.locks.hold(name) as lease:
            if not lease:
                return _locked(name)
            lease.confirm()
            target = self.rollback_target(name)

            def run() -> Outcome:
                rotation = self.store.claim_rotation(target.rotation)
                if rotation.state != State.REVERTING:
                    rotation = request_rollback(
                        self.store, target, rotation, reason=reason, by=current_actor()
                    )
                return self._run(policy, rotation, lease)

            return self._reported(name, run)

    def adopt(self, name: str, key_id: str | None = None) -> Outcome:
        """Record the key already in Vault as current, so rotation follows the schedule.

        Without adoption a policy never rotated is due at once.
        """
        policy = self.policy(name)
        with self.locks.hold(name) as lease:
            if not lease:
                return _locked(name)
            active = self.store.active_rotation(name)
            if active is not None:
                raise RotationFailed(
                    f"policy {name} has an unfinished rotation {active.id} ({active.state}); "
                    "finish it with 'rotator rotate now' instead of adopting"
                )
            path = policy.vault.normalized_path
            vault = self.vault_for(policy)
            lease.confirm()
            current = vault.read(path)
            if current is None or current.field(policy.vault.field) is None:
                raise RotationFailed(
                    f"Vault has no {policy.vault.field} at {vault.mount}/{path}; "
                    "adopt records a key that is already there"
                )
            key_id = key_id or self.current_key_id(policy)
            now = self.clock()
            if key_id:
                lease.confirm()
                vault.update_metadata(
                    path,
                    {
                        metadata_key(policy.vault.field, "key_id"): key_id,
                        metadata_key(policy.vault.field, "policy"): name,
                        metadata_key(policy.vault.field, "version"): str(current.version),
                    },
                )
            with self.store.transaction() as connection:
                self.store.set_policy_state(
                    name,
                    connection=connection,
                    current_key_id=key_id,
                    vault_version=current.version,
                    adopted_at=now,
                )
                self.store.record_event(
                    name,
                    "adopt",
                    "succeeded",
                    details={"key_id": key_id, "vault_version": current.version},
                    connection=connection,
                )
            due = due_window(name, policy.schedule, self.store.policy_state(name), now).start
            return Outcome(
                name,
                Result.ADOPTED,
                f"adopted key {key_id or '(id unknown)'} at Vault version {current.version}; "
                f"first rotation due {format_time(due)}",
            )

    # -- steps shared by the entry points ----------------------------------------

    def _run(self, policy: Policy, rotation: RotationRecord, lease: Lease) -> Outcome:
        with bound_log_context(rotation_id=rotation.id):
            return self._drive(policy, rotation, lease)

    def _drive(self, policy: Policy, rotation: RotationRecord, lease: Lease) -> Outcome:
        self.vault.renew_if_needed()
        context = RotationContext(
            policy=policy,
            provider=self.provider_for(policy),
            vault=self.vault_for(policy),
            store=self.store,
            clock=self.clock,
            max_attempts=self.max_attempts,
            lease=lease,
            reread_credential=lambda: self._reread_credential(policy),
        )
        run = RollbackRun if rotation.state == State.REVERTING else RotationRun
        outcome = run(context, rotation).run()
        self._run_hooks(policy, rotation.id)
        return outcome

    def _run_hooks(self, policy: Policy, rotation_id: str) -> None:
        """The consumer hooks the rotation owes now; nothing here can fail the rotation."""
        if not (policy.after_store or policy.after_revoke):
            return
        from rotator.hooks.runner import HookRunner

        try:
            rotation = self.store.rotation(rotation_id)
            if rotation is None:
                return
            runner = HookRunner(
                self.store,
                self.config.kubernetes,
                self.resolve_credential,
                self.notifier.notify,
                self.clock,
            )
            runner.run_owed(policy, rotation, self.vault_for(policy).mount)
        except Exception as exc:
            log.error(
                "consumer hooks could not run",
                policy=policy.name,
                error=scrub(f"{type(exc).__name__}: {exc}"),
            )

    def _plan_and_run(
        self,
        policy: Policy,
        lease: Lease,
        state: PolicyState | None,
        *,
        trigger: str,
        emergency: bool,
    ) -> Outcome:
        """Plan a fresh rotation and run it; ``state``: the policy's row, read under the lock."""
        try:
            lease.confirm()
            rotation = self._plan(policy, lease, state, trigger=trigger, emergency=emergency)
        except LockLost as exc:
            return lost_lock(policy.name, exc, self.store)
        except (VendorError, VaultError, RotationFailed) as exc:
            # Nothing was changed yet: report it, and let the other policies go on.
            return Outcome(policy.name, Result.FAILED, f"not started: {exc}")
        return self._run(policy, rotation, lease)

    def _claim(self, rotation: RotationRecord, lease: Lease) -> RotationRecord:
        """Take ``rotation`` over, on the lock's session (a lock taken again meanwhile needs
        nothing more: this is the claim)."""
        return lease.write(
            lambda session: self.store.claim_rotation(rotation, session=session),
            retaken=lambda: None,
        )

    def _make_emergency(self, rotation: RotationRecord) -> RotationRecord:
        changes: StepChanges = {"emergency": True}
        if rotation.state == State.GRACE:
            changes["grace_until"] = self.clock()
        return self.store.update_rotation(
            rotation,
            step="emergency",
            outcome="started",
            details={"state": rotation.state, "note": "grace period cut short"},
            **changes,
        )

    def current_key_id(self, policy: Policy, *, read_vault: bool = True) -> str | None:
        """The key the policy's Vault secret holds now, as far as rotator knows it."""
        return self._current_key_id(policy, self.store.policy_state(policy.name), read_vault)

    def _current_key_id(
        self, policy: Policy, state: PolicyState | None, read_vault: bool = True
    ) -> str | None:
        """As ``current_key_id``, given the policy's row ``state``.

        The key found here is the one revoked after the rotation, so Vault's
        custom_metadata (which anyone with metadata write may set) only counts when
        it names a rotation in rotator's own database that made that very key.
        """
        if state and state.current_key_id:
            return state.current_key_id
        configured = self.provider_for(policy).configured_key_id(policy.selector)
        if configured or not read_vault:
            return configured
        field = policy.vault.field
        vault = self.vault_for(policy)
        metadata = vault.custom_metadata(policy.vault.normalized_path)
        key_id = metadata.get(metadata_key(field, "key_id")) or None
        if key_id is None:
            return None
        made_by = self.store.rotation(metadata.get(metadata_key(field, "rotation_id")) or "")
        if made_by is None or made_by.policy != policy.name or made_by.new_key_id != key_id:
            raise RotationFailed(
                f"policy {policy.name}: Vault's custom_metadata at "
                f"{vault.mount}/{policy.vault.normalized_path} names key {key_id}, "
                "but no rotation in rotator's database made that key, so it does not decide "
                f"which key is revoked. Name the key in Vault: 'rotator adopt {policy.name} "
                "--key-id ID', or put its id in the policy's key: selector"
            )
        return key_id

    def _plan(
        self,
        policy: Policy,
        lease: Lease,
        state: PolicyState | None,
        *,
        trigger: str,
        emergency: bool,
    ) -> RotationRecord:
        """Step 1: a fresh rotation row, state ``planned``, written under the lock."""
        old_key_id = self._current_key_id(policy, state)
        if policy.strategy is Strategy.REGENERATE and not old_key_id:
            raise RotationFailed(
                f"policy {policy.name}: regenerate needs the id of the key to regenerate; "
                f"name it in the policy's key: selector or run 'rotator adopt {policy.name} "
                "--key-id ID'"
            )
        provider = self.provider_for(policy)
        provider.preflight(policy.selector, old_key_id, self_rotating=policy.self_rotating)
        rotation_id = uuid.uuid4().hex
        now = self.clock()
        create = policy.strategy is Strategy.CREATE_THEN_DELETE
        record = RotationRecord(
            id=rotation_id,
            policy=policy.name,
            provider=policy.provider_type,
            strategy=policy.strategy,
            state=State.PLANNED,
            emergency=emergency,
            old_key_id=old_key_id,
            new_key_id=old_key_id if not create else None,
            new_key_name=provider.key_name(policy.selector, policy.name, rotation_id)
            if create
            else None,
            new_secret_fingerprint=None,
            vault_path=policy.vault.normalized_path,
            vault_field=policy.vault.field,
            vault_base_version=None,
            vault_version=None,
            grace_until=None,
            needs_attention=False,
            attempts=0,
            next_attempt_at=None,
            last_error=None,
            created_at=now,
            updated_at=now,
            completed_at=None,
        )
        details: dict[str, DetailValue] = {
            "trigger": trigger,
            "strategy": policy.strategy.value,
            "old_key_id": old_key_id,
            "emergency": emergency,
        }
        # On the lock's session, which confirms the lock for the first call; a lock taken
        # again meanwhile needs no claim: the row is new (the unique index refuses a second).
        lease.write(
            lambda session: self.store.create_rotation(record, details=details, session=session),
            retaken=lambda: None,
        )
        return record

    # -- plan / dry run -------------------------------------------------------

    def describe(
        self, name: str, *, emergency: bool = False, force: bool = False, trigger: Trigger = "now"
    ) -> Outcome:
        """The calls a run would make for ``name``, making none; see ``dry_run``."""
        lines, message = self.dry_run(name, emergency=emergency, force=force, trigger=trigger)
        return Outcome(name, Result.DRY_RUN, message, calls=shown(lines))

    def dry_run(
        self, name: str, *, emergency: bool = False, force: bool = False, trigger: Trigger = "now"
    ) -> tuple[list[Line], str]:
        """What ``rotate now`` (``trigger="now"``) or the next scheduled run of a due
        policy (``"schedule"``) would do, in order: the vendor requests themselves, and
        Vault's part in words. Reads the database only: no vendor or Vault call, not even
        to resolve a ``vault:`` provider token (requests are built without one).
        """
        policy = self.policy(name)
        rows = self.store.policy_rows(name)
        active = rows.active
        if active is not None and active.state == State.REVERTING:
            # Whoever runs next finishes a rollback under way, whatever the trigger.
            return [
                f"resume rotation {active.id} from state {active.state}",
                *describe_rollback(replace(active, state=State.GRACE)),
            ], "no call was made"
        now = self.clock()
        start = self._dry_run_start(policy, rows, emergency=emergency, force=force, trigger=trigger)
        if isinstance(start, str):
            return [], f"no call would be made: {start}"
        with self._planner(policy) as provider:

            def walk(facts: Facts) -> DryRun:
                dry_run = DryRun(
                    policy,
                    provider,
                    facts,
                    vault_path=f"{self._mount(policy)}/{policy.vault.normalized_path}",
                    staging_path=f"{self._mount(policy)}/"
                    f"{self.config.vault.staging_prefix.strip('/')}/{name}",
                    now=now,
                )
                dry_run.walk()
                return dry_run

            def fresh(old_key_id: str | None, *, emergency: bool) -> list[Line]:
                checks = provider.plan_preflight(
                    policy.selector, old_key_id, self_rotating=policy.self_rotating
                )
                return [*checks, *walk(Facts.fresh(policy, provider, old_key_id, emergency)).lines]

            if active is None or start is Start.FRESH:
                old = self._known_key_id(policy, rows.state, provider)
                return fresh(old, emergency=emergency), "no call was made"
            resumed = walk(Facts.of(active, emergency=emergency))
            lines = [f"resume rotation {active.id} from state {active.state}", *resumed.lines]
            # As rotate now: once the leaked key's rotation completes, a fresh one replaces it.
            if emergency and trigger == "now" and resumed.state is State.COMPLETED:
                made = active.new_key_id or f"<the key rotation {active.id} makes>"
                lines.append("then a fresh rotation with no grace period:")
                lines += fresh(made, emergency=True)
            return lines, "no call was made"

    def _dry_run_start(
        self,
        policy: Policy,
        rows: PolicyRows,
        *,
        emergency: bool,
        force: bool,
        trigger: Trigger,
    ) -> Start | str:
        """How the run would start on ``policy``, or why it would make no call at all."""
        name, active = policy.name, rows.active
        reason = self._hold_reason(policy, rows)
        if trigger == "schedule":
            refused = self._refused_on_schedule(name, active, rows.state, reason)
            if refused is not None:
                return refused.message
            return Start.FRESH if active is None else Start.RESUME
        if reason is not None and not force:
            return held(name, reason, hint=FORCE_HINT).message
        start = rotate_now_start(active, emergency=emergency, now=self.clock())
        if active is not None and start is Start.LEAVE_IN_GRACE:
            return _in_grace(active).message.removeprefix("not rotated: ")
        return start

    def _mount(self, policy: Policy) -> str:
        return policy.vault.mount or self.config.vault.mount

    @staticmethod
    def _known_key_id(
        policy: Policy, state: PolicyState | None, provider: Provider[Any, Any]
    ) -> str | None:
        """The current key as far as the policy's row ``state`` or the policy tell (no Vault
        read)."""
        if state and state.current_key_id:
            return state.current_key_id
        return provider.configured_key_id(policy.selector)

    @contextmanager
    def _planner(self, policy: Policy) -> Iterator[Provider[Any, Any]]:
        """A provider to build requests with: the one in use, else one given no credential.

        Building a request needs no token, so a ``vault:`` token is not read for a plan.
        """
        with self._providers_lock:
            provider = self._providers.get(policy.provider_name)
        if provider is not None:
            yield provider
            return
        planner = policy.provider_class(policy.provider_settings, PLANNED_SECRET)
        try:
            yield planner
        finally:
            planner.close()


def _in_grace(active: RotationRecord) -> Outcome:
    assert active.grace_until is not None
    return Outcome(
        active.policy,
        Result.IN_GRACE,
        f"not rotated: rotation {active.id} is in grace until {format_time(active.grace_until)} "
        f"(old key {active.old_key_id} still live); the new key is already in Vault. "
        "Use --emergency to revoke the old key now, or wait.",
        rotation_id=active.id,
        state=active.state,
        new_key_id=active.new_key_id,
        vault_version=active.vault_version,
        grace_until=active.grace_until,
        attempted=False,
    )


def _emergency_after_grace(fresh: Outcome, interrupted: RotationRecord) -> Outcome:
    """An emergency during grace revokes the key in grace and, once replaced, its successor."""
    if fresh.result is not Result.COMPLETED:
        note = f"emergency: 1 key revoked ({interrupted.old_key_id}, the old key in grace)"
    else:
        note = (
            f"emergency: 2 keys revoked ({interrupted.old_key_id}, the old key in grace, and "
            f"{interrupted.new_key_id}, which rotation {interrupted.id} had made)"
        )
    return replace(fresh, message=f"{fresh.message}; {note}")


def _locked(name: str) -> Outcome:
    return Outcome(
        name,
        Result.LOCKED,
        "another rotator process is working on this policy now; nothing was done",
    )
