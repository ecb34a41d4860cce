"""Read-only inspection of a policy's key slot: orphans, strays and drift.

Three views are compared: the keys the vendor lists, the key id in Vault's
current version metadata, and the rotation records in the database.

- orphans: vendor keys named the way rotator names its keys that neither
  Vault nor the database (current key, in-flight rotation) references;
- strays: other keys of the slot that are not rotator's (reported, never touched);
- other policies' keys: keys named for another policy of the same provider that
  shares the slot (reported under that policy's name, never touched here);
- drift: Vault's current key is no longer listed by the vendor (revoked by
  hand), or Vault was written by someone else since rotator's last write.

``explain_due`` says when a policy next acts and why, for ``plan``.

Only list and read calls are made here; acting on the findings is ``reconcile``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from rotator.audit.store import RotationRecord
from rotator.config.loader import Policy
from rotator.durations import format_setting
from rotator.engine.schedule import NEVER_ROTATED, due_window
from rotator.errors import RotatorError
from rotator.providers.base import VendorKey
from rotator.timestamps import format_time
from rotator.vault_metadata import metadata_key
from rotator.vocabulary import State

if TYPE_CHECKING:
    from rotator.engine.engine import Engine

EXPIRY_WARNING = timedelta(days=7)


class OwnedKey(NamedTuple):
    """A key of the slot named for another policy: ``owner``."""

    owner: str
    key: VendorKey


@dataclass(frozen=True)
class SlotReport:
    policy: str
    vendor_keys: list[VendorKey] = field(default_factory=list)
    vault_version: int | None = None
    vault_key_id: str | None = None
    recorded_key_id: str | None = None
    in_flight: RotationRecord | None = None
    orphans: list[VendorKey] = field(default_factory=list)
    strays: list[VendorKey] = field(default_factory=list)
    #: Keys of the slot named for another policy, with that policy's name.
    others: list[OwnedKey] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def current_key(self) -> VendorKey | None:
        wanted = self.vault_key_id or self.recorded_key_id
        return next((k for k in self.vendor_keys if k.key_id == wanted), None)

    @property
    def old_key_in_grace(self) -> VendorKey | None:
        """The key a rotation waiting in grace replaced, while the vendor still lists it."""
        flight = self.in_flight
        if flight is None or flight.state != State.GRACE:
            return None
        return next((k for k in self.vendor_keys if k.key_id == flight.old_key_id), None)

    @property
    def new_key_first_used_at(self) -> datetime | None:
        """In grace, the new key's earliest use known: on record, else the vendor's (latest)."""
        flight = self.in_flight
        if flight is None or flight.state != State.GRACE:
            return None
        if flight.new_key_first_used_at:
            return flight.new_key_first_used_at
        new_key = next((k for k in self.vendor_keys if k.key_id == flight.new_key_id), None)
        return new_key.last_used_at if new_key else None


class Due(NamedTuple):
    """When a policy next acts (None: it waits for a person), and why, in words."""

    at: datetime | None
    why: str


def explain_due(engine: Engine, policy: Policy, now: datetime) -> Due:
    """When ``policy`` next acts and why: attention, a retry, grace, a resume or its schedule."""
    name = policy.name
    rows = engine.store.policy_rows(name)  # one statement: the two rows agree
    state, active = rows.state, rows.active
    if active is not None and active.needs_attention:
        return Due(
            None,
            f"not rotated on schedule: rotation {active.id} needs attention after "
            f"{active.attempts} attempts; fix the cause, then run 'rotator rotate now {name}'",
        )
    if state is not None and state.attention:
        return Due(None, f"not rotated on schedule: needs attention ({state.attention})")
    if active is not None and active.next_attempt_at and active.next_attempt_at > now:
        return Due(
            active.next_attempt_at,
            f"retry of rotation {active.id} (attempt {active.attempts + 1} of "
            f"{engine.max_attempts}) after: {active.last_error}",
        )
    if active is not None and active.state == State.GRACE and active.grace_until:
        return Due(
            active.grace_until,
            f"rotation {active.id} revokes the old key when its grace period ends",
        )
    if active is not None:
        return Due(
            now, f"rotation {active.id} is unfinished ({active.state}); the next run resumes it"
        )
    window = due_window(name, policy.schedule, state, now)
    if window.start == NEVER_ROTATED:
        return Due(now, "never rotated nor adopted")
    base = "last rotation" if state and state.last_rotated_at else "adoption"
    every = policy.schedule.every
    rule = policy.schedule.cron or (format_setting(every) if every else "")
    why = f"{rule} after the {base}"
    if window.end is not None:
        why += f", within a window ending {format_time(window.end)}"
    return Due(window.start, why)


def inspect_policy(engine: Engine, policy: Policy, now: datetime) -> SlotReport:
    """The slot's three views compared; vendor or Vault errors become ``error``."""
    try:
        return _inspect(engine, policy, now)
    except RotatorError as exc:
        return SlotReport(policy.name, error=str(exc))


class HeldElsewhere(NamedTuple):
    """What other policies hold: never an orphan of a policy, whatever the names say."""

    key_ids: set[str | None]
    #: Names of the keys their unfinished rotations are making (ids not known yet).
    key_names: set[str]


def _held_by_other_policies(engine: Engine, policy: Policy) -> HeldElsewhere:
    """Key ids every other policy holds (current, configured, in flight), and the names of
    keys their unfinished rotations are making: never an orphan of ``policy``, whatever
    their names say (a prefix changed since, or two policies whose names collide)."""
    ids: set[str | None] = {
        state.current_key_id
        for name, state in engine.store.all_policy_states().items()
        if name != policy.name
    }
    names: set[str] = set()
    for rotation in engine.store.unfinished_rotations():
        if rotation.policy != policy.name:
            ids |= {rotation.old_key_id, rotation.new_key_id}
            if rotation.new_key_name:
                names.add(rotation.new_key_name)
    for other in engine.config.policies.values():
        if other.name != policy.name and other.provider_name == policy.provider_name:
            ids.add(engine.provider_for(other).configured_key_id(other.selector))
    return HeldElsewhere(ids, names)


def _inspect(engine: Engine, policy: Policy, now: datetime) -> SlotReport:
    provider = engine.provider_for(policy)
    keys = provider.list_keys(policy.selector)
    listed = {k.key_id for k in keys}
    current = engine.vault_for(policy).read(policy.vault.normalized_path)
    field_name = policy.vault.field
    vault_key_id = (
        current.custom_metadata.get(metadata_key(field_name, "key_id")) if current else None
    )
    written_version = (
        current.custom_metadata.get(metadata_key(field_name, "version")) if current else None
    )
    rows = engine.store.policy_rows(policy.name)  # one statement: the two rows agree
    state, active = rows.state, rows.active
    referenced, others_in_flight = _held_by_other_policies(engine, policy)
    referenced |= {vault_key_id, state.current_key_id if state else None}
    referenced |= {provider.configured_key_id(policy.selector)}
    if active is not None:
        referenced |= {active.old_key_id, active.new_key_id}
    # A key bearing the in-flight rotation's name is its own, unless that rotation is still
    # minting: then the key's secret was lost with the crash (unless rotator chose it).
    in_flight_name = active.new_key_name if active else None
    minting = active is not None and active.state == State.MINTING
    if minting and not provider.capabilities.caller_chooses_secret:
        in_flight_name = None

    orphans: list[VendorKey] = []
    strays: list[VendorKey] = []
    others: list[OwnedKey] = []
    for key in keys:
        if key.key_id in referenced or (in_flight_name and key.name == in_flight_name):
            continue
        if key.name in others_in_flight:
            continue  # another policy's rotation is minting it: that one decides
        if provider.is_ours(policy.selector, policy.name, key):
            orphans.append(key)
        elif owner := _other_owner(engine, policy, key):
            others.append(OwnedKey(owner, key))
        else:
            strays.append(key)

    drift = []
    if vault_key_id and vault_key_id not in listed:
        drift.append(
            f"Vault's current secret belongs to key {vault_key_id}, which the vendor no longer "
            "lists (revoked by hand?): consumers may hold a dead key"
        )
    ours = {state.vault_version if state else None, active.vault_version if active else None}
    if current is not None and (ours - {None}) and current.version not in ours:
        drift.append(
            f"Vault version {current.version} of {policy.vault.normalized_path} was not written "
            f"by rotator (its last write was version {max(v for v in ours if v)}): someone "
            "changed the secret by hand"
        )
    elif current is not None and written_version and written_version != str(current.version):
        drift.append(
            f"Vault version {current.version} does not match rotator's metadata (version "
            f"{written_version}): the secret was written by someone else"
        )

    warnings = provider.policy_warnings(policy.selector, policy.strategy, policy.grace_period)
    report = SlotReport(
        policy.name,
        vendor_keys=keys,
        vault_version=current.version if current else None,
        vault_key_id=vault_key_id,
        recorded_key_id=state.current_key_id if state else None,
        in_flight=active,
        orphans=orphans,
        strays=strays,
        others=others,
        drift=drift,
        warnings=warnings,
    )
    held = report.current_key
    if held is not None and held.expires_at is not None and held.expires_at - now < EXPIRY_WARNING:
        warnings.append(f"the current key expires at the vendor on {held.expires_at.isoformat()}")
    return report


def _other_owner(engine: Engine, policy: Policy, key: VendorKey) -> str | None:
    """The other policy of the same provider whose key name ``key`` carries, if any."""
    provider = engine.provider_for(policy)
    for other in engine.config.policies.values():
        shares_provider = other.name != policy.name and other.provider_name == policy.provider_name
        if shares_provider and provider.is_ours(other.selector, other.name, key):
            return other.name
    return None
