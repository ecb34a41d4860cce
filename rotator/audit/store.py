"""The audit store: rotation rows, per-policy state and the append-only event log.

Every state change of a rotation and the event that records it are written in
one transaction, so the log never disagrees with the state: the values written to
``rotations`` and ``policy_state`` ride along in the event's ``changes``. Event
details are plain values; a ``Secret`` handed to them is refused, and any text
holding a live secret's value is scrubbed before it is stored.

The log is a chain (rotator/audit/chain.py), sealed after commit: an event is
inserted unsealed, MACed by its writer when an audit key is configured, and within
``SEAL_INTERVAL`` of its commit a sealing pass on a timer thread gives every
committed unsealed event its position ``seq``, ``prev_hash`` and ``hash`` in one
batch, then records the new head in the anchor outside the database. Sealing in the
writer's own transaction would make every rotation step in the database queue on
one row; sealed afterwards, only the sealer takes that lock, and it skips rather
than waits when another process holds it.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from rotator.audit import migrations
from rotator.audit.actor import current_actor
from rotator.audit.chain import (
    AnchorPoint,
    ChainTrust,
    canonical_json,
    event_hash,
    event_mac,
    link_mac,
)
from rotator.audit.connections import make_engine
from rotator.audit.records import TERMINAL_STATES, PolicyState
from rotator.audit.tables import audit_chain_head, audit_events, policy_state, rotations
from rotator.audit.verify import ChainReport, row_changes, verify
from rotator.errors import AuditStoreError, LockLost, RotatorError, SecretLeakError
from rotator.log import get_logger
from rotator.secret import Secret, scrub

DetailValue = str | int | float | bool | None
ACTOR = current_actor()
log = get_logger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RotationRecord:
    """One row of ``rotations``: everything needed to resume a rotation after a crash."""

    id: str
    policy: str
    provider: str
    strategy: str
    state: str
    emergency: bool
    old_key_id: str | None
    new_key_id: str | None
    new_key_name: str | None
    new_secret_fingerprint: str | None
    vault_path: str
    vault_field: str
    vault_base_version: int | None
    vault_version: int | None
    grace_until: datetime | None
    needs_attention: bool
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    #: The value this process holds; a process taking the rotation over bumps it.
    fence: int = 0
    #: When grace began, and its end before any extension for an old key still in use.
    grace_started_at: datetime | None = None
    grace_original_until: datetime | None = None
    #: The old key's call count when grace began, where the vendor counts calls.
    old_key_calls_at_grace: int | None = None


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    policy: str
    rotation_id: str | None
    step: str
    outcome: str
    actor: str
    details: dict[str, Any]
    #: Position in the hash chain; None until the event is sealed, just after it commits.
    seq: int | None = None
    prev_hash: str = ""
    hash: str = ""
    #: The audit key version that MACs it; 0 for an unkeyed event.
    key_version: int = 0


__all__ = ["AuditEvent", "AuditStore", "ChainReport", "RotationRecord", "event_hash", "utcnow"]

#: Events sealed per transaction: bounds the sealer's lock hold and memory.
SEAL_BATCH = 2000
#: Seconds between sealing passes: the most an event waits to be sealed while rotator runs.
SEAL_INTERVAL = 0.1
#: Seconds between two anchor writes to Vault by one process: the newest events sealed
#: within it are not yet covered by the anchor.
ANCHOR_INTERVAL = 1.0
#: Marks, in a connection's ``info``, a transaction that appended events.
_APPENDED = "rotator.audit.appended"
#: Rows one baseline event records.
_BASELINE_ROWS = 500
#: Row values written in a transaction, waiting for the event that records them.
_CHANGES = "rotator.audit.changes"


_ROTATION_FIELDS = tuple(f.name for f in fields(RotationRecord))
# Selected in AuditEvent's field order, so a row builds an event positionally (long histories).
_EVENT_COLUMNS = tuple(audit_events.c[f.name] for f in fields(AuditEvent))

# Statements built once, values passed as parameters: building one per call (and its cache
# key over literal values) cost more CPU than executing it.
_INSERT_EVENT = insert(audit_events)
_SEAL_EVENT = (
    update(audit_events)
    .where(audit_events.c.id == bindparam("event_id"))
    .values(seq=bindparam("b_seq"), prev_hash=bindparam("prev"), hash=bindparam("digest"))
)
# What a sealer reads of an unsealed event: JSON columns as the text they are stored as.
_SEAL_COLUMNS = (
    *(audit_events.c[name] for name in ("id", "at", "policy", "rotation_id", "step", "outcome")),
    audit_events.c.actor,
    cast(audit_events.c.details, Text).label("details"),
    cast(audit_events.c.changes, Text).label("changes"),
    audit_events.c.key_version,
    audit_events.c.nonce,
    audit_events.c.mac,
)
_INSERT_ROTATION = insert(rotations)
_UPDATE_ROTATION = update(rotations).where(
    rotations.c.id == bindparam("b_id"), rotations.c.fence == bindparam("b_fence")
)
_INSERT_POLICY_STATE = insert(policy_state)
_UPDATE_POLICY_STATE = update(policy_state).where(policy_state.c.policy == bindparam("b_policy"))


def _fenced_off(rotation: RotationRecord) -> LockLost:
    return LockLost(
        f"policy {rotation.policy}: rotation {rotation.id} was taken over by another process "
        "(this one lost the policy's lock); this process stopped and wrote nothing more"
    )


def _clean_details(details: Mapping[str, DetailValue]) -> dict[str, DetailValue]:
    clean: dict[str, DetailValue] = {}
    for key, value in details.items():
        if isinstance(value, Secret):
            raise SecretLeakError(f"audit detail {key!r} is a Secret; audit rows never hold one")
        clean[key] = scrub(value) if isinstance(value, str) else value
    return clean


class AuditStore:
    """Rotation state and audit events in PostgreSQL (production) or SQLite (trials)."""

    def __init__(self, engine: Engine, trust: ChainTrust | None = None) -> None:
        self.engine = engine
        #: The audit key and anchor; None keeps the chain unkeyed (see chain.py).
        self.trust = trust
        self._sealer = threading.Lock()
        self._schedule_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._last_pass = 0.0
        self._appended = False
        self._closed = False
        self._head: AnchorPoint | None = None
        self._anchored_seq = 0
        self._anchored_at = -ANCHOR_INTERVAL

    @classmethod
    def open(cls, url: Secret, *, workers: int = 4, trust: ChainTrust | None = None) -> AuditStore:
        return cls(make_engine(url, workers=workers), trust)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def require_current_schema(self) -> None:
        with self._errors():
            migrations.require_current_schema(self.engine)

    def is_reachable(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except SQLAlchemyError:
            return False

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            raise AuditStoreError(
                f"cannot use the audit database ({scrub(str(exc.orig)).strip()}); check "
                "database.url and that the database is running"
            ) from None
        except ProgrammingError as exc:
            raise AuditStoreError(
                f"the audit database refused rotator's statement ({scrub(str(exc.orig)).strip()}); "
                "run 'rotator db upgrade' and check that rotator's database role may read and "
                "write its tables"
            ) from None
        except SQLAlchemyError as exc:
            raise AuditStoreError(
                f"the audit database failed a statement ({type(exc.__cause__ or exc).__name__}); "
                "check the database's log"
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; events appended in it are sealed into the chain after it commits."""
        with self._errors():
            with self.engine.begin() as connection:
                yield connection
                if connection.info.get(_CHANGES):
                    # Rows written after the transaction's last event still get one.
                    self.record_event("*", "state", "changed", connection=connection)
                appended = connection.info.pop(_APPENDED, False)
            if appended:
                self._appended = True
                self.seal_soon()

    # -- events ---------------------------------------------------------------

    def record_event(
        self,
        policy: str,
        step: str,
        outcome: str,
        *,
        rotation_id: str | None = None,
        details: Mapping[str, DetailValue] | None = None,
        connection: Connection | None = None,
    ) -> None:
        values = {
            # Whole microseconds survive every backend unchanged, so the hash can be recomputed.
            "at": utcnow(),
            "policy": policy,
            "rotation_id": rotation_id,
            "step": step,
            "outcome": outcome,
            "actor": ACTOR,
            "details": _clean_details(details or {}),
        }
        if connection is not None:
            self._append(connection, values)
            return
        with self.transaction() as conn:
            self._append(conn, values)

    def _append(self, connection: Connection, values: dict[str, Any]) -> None:
        """Insert one event, with the row changes written before it and (keyed) its MAC."""
        changes = connection.info.pop(_CHANGES, None)
        values["changes"] = changes
        if self.trust is not None:
            version, key = self.trust.current_key()
            nonce = secrets.token_hex(16)
            values.update(
                key_version=version,
                nonce=nonce,
                mac=event_mac(
                    key,
                    version,
                    nonce,
                    values["at"],
                    values["policy"],
                    values["rotation_id"],
                    values["step"],
                    values["outcome"],
                    values["actor"],
                    canonical_json(values["details"]),
                    None if changes is None else canonical_json(changes),
                ),
            )
        connection.execute(_INSERT_EVENT, values)
        connection.info[_APPENDED] = True

    @staticmethod
    def _note_changes(
        connection: Connection, table: str, key: str, values: Mapping[str, Any]
    ) -> None:
        """Remember row values written in this transaction for the next event to record."""
        pending = connection.info.setdefault(_CHANGES, {})
        pending.setdefault(table, {}).setdefault(key, {}).update(row_changes(dict(values)))

    # -- sealing ----------------------------------------------------------------

    def seal_soon(self, delay: float | None = None) -> None:
        """Have committed events sealed within ``SEAL_INTERVAL`` (or ``delay``), on a timer thread.

        Requests arriving while a pass is scheduled join it, so a busy process makes
        at most one pass per interval, and writers never wait for one. Sealing is
        bookkeeping after commits that already succeeded: if a pass fails, the events
        stay unsealed (and valid) until the next one.
        """
        with self._schedule_lock:
            if self._timer is not None or self._closed:
                return
            if delay is None:
                delay = max(0.0, self._last_pass + SEAL_INTERVAL - time.monotonic())
            self._timer = threading.Timer(delay, self._timed_seal)
            self._timer.daemon = True
            self._timer.start()

    def _timed_seal(self) -> None:
        with self._schedule_lock:
            self._timer = None
            if self._closed:
                return
            self._last_pass = time.monotonic()
        try:
            with self._sealer:
                while (count := self._seal_pass(wait=False)) == SEAL_BATCH:
                    continue
                wait = self._anchor(force=False)
        except (SQLAlchemyError, RotatorError) as exc:
            log.warning("audit_seal_deferred", error=scrub(str(getattr(exc, "orig", exc))).strip())
            return
        if count is None:
            # Another process holds the chain head; it may have missed our newest events.
            self.seal_soon()
        elif wait:
            self.seal_soon(wait)

    def seal(self) -> int:
        """Seal every committed unsealed event, waiting for other sealers; how many were sealed.

        The new head is anchored at once (rotator commands call this before they exit).
        """
        sealed = 0
        with self._errors(), self._sealer:
            while count := self._seal_pass(wait=True):
                sealed += count
            self._anchor(force=True)
        return sealed

    def _seal_pass(self, *, wait: bool) -> int | None:
        """Seal up to ``SEAL_BATCH`` events in one transaction.

        Returns how many were sealed, or ``None`` when (``wait`` false) another
        process holds the chain head.
        """
        events, head = audit_events.c, audit_chain_head.c
        with self.engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                # Take SQLite's write lock first so two sealers cannot deadlock upgrading to it.
                connection.execute(
                    update(audit_chain_head).where(head.id == 1).values(last_seq=head.last_seq)
                )
            locked = connection.execute(
                select(head.last_hash, head.last_seq)
                .where(head.id == 1)
                .with_for_update(skip_locked=not wait)
            ).first()
            if locked is None:
                return None
            prev, seq = locked.last_hash, locked.last_seq
            rows = connection.execute(
                select(*_SEAL_COLUMNS)
                .where(events.seq.is_(None))
                .order_by(events.id)
                .limit(SEAL_BATCH)
            ).all()
            seals = []
            for row in rows:
                digest = self._link(row, prev, seq + 1)
                if digest is None:
                    break
                seq += 1
                seals.append({"event_id": row.id, "b_seq": seq, "prev": prev, "digest": digest})
                prev = digest
            if seals:
                connection.execute(_SEAL_EVENT, seals)
                connection.execute(
                    update(audit_chain_head)
                    .where(head.id == 1)
                    .values(last_hash=prev, last_seq=seq)
                )
        self._head = AnchorPoint(seq, prev)
        return len(seals)

    def _link(self, row: Any, prev: str, seq: int) -> str | None:
        """The chain hash of ``row`` at ``seq``; None if it needs a key this process lacks."""
        if not row.key_version:
            values = row._asdict()
            values["details"] = json.loads(values["details"])
            return event_hash(prev, values)
        if self.trust is None:
            log.warning("audit_seal_needs_key", event_id=row.id, key_version=row.key_version)
            return None
        key = self.trust.key(row.key_version)
        content_mac = event_mac(
            key,
            row.key_version,
            row.nonce,
            row.at,
            row.policy,
            row.rotation_id,
            row.step,
            row.outcome,
            row.actor,
            row.details,
            row.changes,
        )
        if content_mac != row.mac:
            # Sealed all the same, so the chain goes on; verify reports it at this event.
            log.error("audit_event_not_authentic", event_id=row.id)
        return link_mac(key, prev, seq, row.mac)

    def _anchor(self, *, force: bool) -> float | None:
        """Record the chain head this process saw in the anchor outside the database.

        At most once per ``ANCHOR_INTERVAL`` unless ``force``; returns the seconds to
        wait before trying again when it held back. The anchor only moves forward, and
        only from a chain that still holds the anchored event: a chain truncated or
        rolled back behind rotator's back is never anchored over.
        """
        head = self._head
        if self.trust is None or head is None or head.seq <= self._anchored_seq:
            return None
        wait = self._anchored_at + ANCHOR_INTERVAL - time.monotonic()
        if wait > 0 and not force:
            return wait
        current = self.trust.read_anchor()
        if current is not None and current.seq >= head.seq:
            self._anchored_seq = head.seq
            return None
        if current is not None and not self._holds(current):
            log.error("audit_anchor_diverged", anchored_seq=current.seq, head_seq=head.seq)
            self._anchored_seq = head.seq
            return None
        self.trust.write_anchor(head, replacing=current)
        self._anchored_seq, self._anchored_at = head.seq, time.monotonic()
        return None

    def _holds(self, anchor: AnchorPoint) -> bool:
        """The chain still holds the anchored event (or pruned it, which verify checks)."""
        events = audit_events.c
        with self.engine.begin() as connection:
            found = connection.execute(select(events.hash).where(events.seq == anchor.seq)).first()
            if found is not None:
                return bool(found.hash == anchor.hash)
            oldest = connection.execute(select(func.min(events.seq))).scalar()
        return oldest is not None and anchor.seq < oldest

    def record_baseline(self) -> int:
        """Vouch for the rows that decide revocations as they are now: record them in the chain.

        ``policy_state`` and unfinished ``rotations`` rows written before the chain was
        keyed (or whose events were pruned) are recorded by no event, so ``verify --state``
        cannot check them until this is run. Returns how many rows were recorded.
        """
        with self.transaction() as connection:
            if connection.dialect.name == "sqlite":
                # Hold the write lock from the start, so no row changes between read and record.
                connection.execute(
                    update(audit_chain_head).values(last_seq=audit_chain_head.c.last_seq)
                )
            states = connection.execute(select(policy_state).with_for_update()).all()
            unfinished = connection.execute(
                select(rotations).where(rotations.c.state.not_in(TERMINAL_STATES)).with_for_update()
            ).all()
            rows = [("policy_state", row.policy, row) for row in states]
            rows += [("rotations", row.id, row) for row in unfinished]
            for start in range(0, len(rows), _BASELINE_ROWS):
                chunk = rows[start : start + _BASELINE_ROWS]
                for table, key, row in chunk:
                    self._note_changes(connection, table, key, row._asdict())
                self.record_event(
                    "*", "baseline", "recorded", details={"rows": len(chunk)}, connection=connection
                )
        return len(rows)

    def verify_chain(self, *, state: bool = False) -> ChainReport:
        """Check the chain read-only (see rotator/audit/verify.py); with ``state``, the rows too."""
        with self._errors(), self.engine.connect() as connection:
            if self.dialect == "postgresql":
                # One snapshot for the events and the rows, while rotator goes on writing both
                # (SQLite's read transaction is one already).
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                return verify(connection, self.trust, state=state)

    def prune(self, before: datetime) -> int:
        """Delete the chain's oldest events, up to the first one at or after ``before``.

        A summary event records the position and hash of the last event removed, so
        the rest of the chain (and the anchor) stays verifiable from it.
        """
        self.seal()
        events = audit_events.c
        with self.transaction() as connection:
            first_kept = connection.execute(
                select(func.min(events.seq)).where(events.at >= before)
            ).scalar()
            prefix = select(events.seq, events.hash).where(events.seq.is_not(None))
            if first_kept is not None:
                prefix = prefix.where(events.seq < first_kept)
            last = connection.execute(prefix.order_by(events.seq.desc()).limit(1)).first()
            if last is None:
                return 0
            count = connection.execute(delete(audit_events).where(events.seq <= last.seq)).rowcount
            self.record_event(
                "*",
                "prune",
                "succeeded",
                details={
                    "before": before.isoformat(),
                    "pruned": count,
                    "last_pruned_seq": last.seq,
                    "last_pruned_hash": last.hash,
                },
                connection=connection,
            )
        # Sealed and anchored now: until then the anchor names a position no event holds.
        self.seal()
        return int(count)

    def close(self) -> None:
        """Seal what this process left pending (if it wrote any), then release the connections."""
        with self._schedule_lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        try:
            if self._appended:
                self.seal()
        except RotatorError as exc:
            log.warning("audit_seal_deferred", error=str(exc))
        self.dispose()

    def events(
        self,
        *,
        policy: str | None = None,
        rotation_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: str | None = None,
        step: str | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Matching events in the order they were written; ``limit``: only the newest that many."""
        newest_first = limit is not None
        query = select(*_EVENT_COLUMNS).order_by(
            audit_events.c.id.desc() if newest_first else audit_events.c.id
        )
        if step is not None:
            query = query.where(audit_events.c.step == step)
        if policy is not None:
            query = query.where(audit_events.c.policy == policy)
        if rotation_id is not None:
            query = query.where(audit_events.c.rotation_id == rotation_id)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        if until is not None:
            query = query.where(audit_events.c.at < until)
        if outcome is not None:
            query = query.where(audit_events.c.outcome == outcome)
        if limit is not None:
            query = query.limit(limit)
        with self.transaction() as connection:
            # .all() fetches the rows in one driver call; iterating fetches them one by one.
            rows = connection.execute(query).all()
        events = [AuditEvent(*row) for row in rows]
        return events[::-1] if newest_first else events

    def recorded_outcomes(self) -> set[str]:
        """Every outcome the log holds (a full scan: only asked about an unfamiliar one)."""
        with self.transaction() as connection:
            return set(connection.execute(select(audit_events.c.outcome).distinct()).scalars())

    def set_attention(
        self, policy: str, reason: str | None, *, details: Mapping[str, DetailValue]
    ) -> None:
        """Flag (or, with ``None``, clear) a policy as waiting for a person, with an event."""
        with self.transaction() as connection:
            self.set_policy_state(policy, connection=connection, attention=reason)
            self.record_event(
                policy,
                "attention",
                "flagged" if reason else "cleared",
                details={**details, "reason": reason},
                connection=connection,
            )

    # -- rotations ------------------------------------------------------------

    def create_rotation(
        self, record: RotationRecord, *, details: Mapping[str, DetailValue]
    ) -> None:
        """Insert a new rotation; ``LockLost`` if the policy already has an unfinished one."""
        with self.transaction() as connection:
            values = {f: getattr(record, f) for f in _ROTATION_FIELDS}
            try:
                connection.execute(_INSERT_ROTATION, values)
            except IntegrityError:
                raise LockLost(
                    f"policy {record.policy} already has an unfinished rotation: another process "
                    "started it while this one believed it held the policy's lock"
                ) from None
            self._note_changes(connection, "rotations", record.id, values)
            self.record_event(
                record.policy,
                "plan",
                "succeeded",
                rotation_id=record.id,
                details=details,
                connection=connection,
            )

    def claim_rotation(self, rotation: RotationRecord) -> RotationRecord:
        """Take ``rotation`` over: bump its fence, so whoever worked on it before is fenced off.

        ``LockLost`` if the fence moved since ``rotation`` was read (someone else took it).
        """
        with self.transaction() as connection:
            claimed = connection.execute(
                update(rotations)
                .where(rotations.c.id == rotation.id, rotations.c.fence == rotation.fence)
                .values(fence=rotation.fence + 1)
            ).rowcount
            if not claimed:
                raise _fenced_off(rotation)
            self._note_changes(connection, "rotations", rotation.id, {"fence": rotation.fence + 1})
            self.record_event(
                rotation.policy,
                "fence",
                "claimed",
                rotation_id=rotation.id,
                details={"fence": rotation.fence + 1, "state": rotation.state},
                connection=connection,
            )
        return dataclasses.replace(rotation, fence=rotation.fence + 1)

    def update_rotation(
        self,
        rotation: RotationRecord,
        *,
        step: str,
        outcome: str,
        details: Mapping[str, DetailValue] | None = None,
        policy_state: Mapping[str, Any] | None = None,
        **changes: Any,
    ) -> RotationRecord:
        """Apply ``changes`` to the row and log the step's event in one transaction.

        ``policy_state`` values, when given, update the policy's row in the same
        transaction (a finished rotation moves the policy's current key with it).
        Nothing is written, and ``LockLost`` raised, if another process has taken
        the rotation over since ``rotation`` was claimed (its fence moved).
        """
        unknown = set(changes) - set(_ROTATION_FIELDS)
        if unknown:
            raise AuditStoreError(f"unknown rotation fields: {sorted(unknown)}")
        if "last_error" in changes and changes["last_error"] is not None:
            changes["last_error"] = scrub(str(changes["last_error"]))[:2000]
        changes["updated_at"] = utcnow()
        with self.transaction() as connection:
            updated = connection.execute(
                _UPDATE_ROTATION, {"b_id": rotation.id, "b_fence": rotation.fence, **changes}
            ).rowcount
            if not updated:
                raise _fenced_off(rotation)
            self._note_changes(connection, "rotations", rotation.id, changes)
            if policy_state is not None:
                self.set_policy_state(rotation.policy, connection=connection, **policy_state)
            self.record_event(
                rotation.policy,
                step,
                outcome,
                rotation_id=rotation.id,
                details=details,
                connection=connection,
            )
        return RotationRecord(**{**{f: getattr(rotation, f) for f in _ROTATION_FIELDS}, **changes})

    def rotation(self, rotation_id: str) -> RotationRecord | None:
        with self.transaction() as connection:
            row = connection.execute(select(rotations).where(rotations.c.id == rotation_id)).first()
        return RotationRecord(**row._asdict()) if row else None

    def active_rotation(self, policy: str) -> RotationRecord | None:
        """The policy's unfinished rotation, if any (at most one exists, under the lock)."""
        with self.transaction() as connection:
            row = connection.execute(
                select(rotations)
                .where(rotations.c.policy == policy, rotations.c.state.not_in(TERMINAL_STATES))
                .order_by(rotations.c.created_at.desc())
            ).first()
        return RotationRecord(**row._asdict()) if row else None

    def rotations_for(self, policy: str) -> list[RotationRecord]:
        with self.transaction() as connection:
            rows = connection.execute(
                select(rotations)
                .where(rotations.c.policy == policy)
                .order_by(rotations.c.created_at)
            )
            return [RotationRecord(**row._asdict()) for row in rows]

    def unfinished_rotations(self) -> list[RotationRecord]:
        with self.transaction() as connection:
            rows = connection.execute(
                select(rotations)
                .where(rotations.c.state.not_in(TERMINAL_STATES))
                .order_by(rotations.c.created_at)
            )
            return [RotationRecord(**row._asdict()) for row in rows]

    def unsealed_backlog(self) -> tuple[int, datetime | None]:
        """How many events wait to be sealed into the chain, and when the oldest was written."""
        with self.transaction() as connection:
            count, oldest = connection.execute(
                select(func.count(), func.min(audit_events.c.at)).where(
                    audit_events.c.seq.is_(None)
                )
            ).one()
        return int(count), oldest

    def all_policy_states(self) -> dict[str, PolicyState]:
        with self.transaction() as connection:
            rows = connection.execute(select(policy_state)).all()
        result = {}
        for row in rows:
            values = row._asdict()
            values.pop("updated_at")
            result[row.policy] = PolicyState(**values)
        return result

    # -- per-policy state -----------------------------------------------------

    def policy_state(self, policy: str) -> PolicyState | None:
        with self.transaction() as connection:
            row = connection.execute(
                select(policy_state).where(policy_state.c.policy == policy)
            ).first()
        if row is None:
            return None
        values = row._asdict()
        values.pop("updated_at")
        return PolicyState(**values)

    def set_policy_state(
        self, policy: str, *, connection: Connection | None = None, **values: Any
    ) -> None:
        values["updated_at"] = utcnow()
        if connection is None:
            with self.transaction() as conn:
                self._upsert_policy_state(conn, policy, values)
        else:
            self._upsert_policy_state(connection, policy, values)

    @classmethod
    def _upsert_policy_state(
        cls, connection: Connection, policy: str, values: dict[str, Any]
    ) -> None:
        changed = connection.execute(_UPDATE_POLICY_STATE, {"b_policy": policy, **values}).rowcount
        if not changed:
            values = {**dict.fromkeys(policy_state.c.keys()), **values, "policy": policy}
            connection.execute(_INSERT_POLICY_STATE, values)
        cls._note_changes(connection, "policy_state", policy, values)

    def dispose(self) -> None:
        self.engine.dispose()
