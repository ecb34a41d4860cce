"""The audit store: rotation rows, per-policy state and the append-only event log.

Every state change of a rotation and the event that records it are written in
one transaction, so the log never disagrees with the state. Event details are
plain values; a ``Secret`` handed to them is refused, and any text holding a
live secret's value is scrubbed before it is stored.

The log is a hash chain, sealed after commit: an event is inserted unsealed and,
within ``SEAL_INTERVAL`` of its commit, a sealing pass on a timer thread gives
every committed unsealed event its position ``seq``, ``prev_hash`` and ``hash``
in one batch. Sealing in the writer's own transaction would make every rotation
step in the database queue on one row; sealed afterwards, only the sealer takes
that lock, and it skips rather than waits when another process holds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
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
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from rotator.audit import migrations
from rotator.audit.connections import make_engine
from rotator.audit.records import TERMINAL_STATES, PolicyState
from rotator.audit.tables import audit_chain_head, audit_events, policy_state, rotations
from rotator.errors import AuditStoreError, LockLost, SecretLeakError
from rotator.log import get_logger
from rotator.secret import Secret, scrub

DetailValue = str | int | float | bool | None
ACTOR = f"{socket.gethostname()}:{os.getpid()}"
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


@dataclass(frozen=True)
class ChainReport:
    """The result of recomputing the audit hash chain."""

    checked: int
    broken_at: int | None
    problem: str | None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def event_content(values: Mapping[str, Any]) -> str:
    """An event's content, canonically serialised: what its chain hash covers."""
    return json.dumps(
        {
            "at": values["at"].astimezone(UTC).isoformat(),
            "policy": values["policy"],
            "rotation_id": values["rotation_id"],
            "step": values["step"],
            "outcome": values["outcome"],
            "actor": values["actor"],
            "details": values["details"],
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )


def event_hash(prev_hash: str, values: Mapping[str, Any]) -> str:
    """The chain hash of one event: sha256 of ``prev_hash``, a newline, and its content."""
    return hashlib.sha256(f"{prev_hash}\n{event_content(values)}".encode()).hexdigest()


#: Events sealed per transaction: bounds the sealer's lock hold and memory.
SEAL_BATCH = 2000
#: Seconds between sealing passes: the most an event waits to be sealed while rotator runs.
SEAL_INTERVAL = 0.1
#: Marks, in a connection's ``info``, a transaction that appended events.
_APPENDED = "rotator.audit.appended"


_ROTATION_FIELDS = tuple(f.name for f in fields(RotationRecord))
# Selected in AuditEvent's field order, so a row builds an event positionally (long histories).
_EVENT_COLUMNS = tuple(audit_events.c[f.name] for f in fields(AuditEvent))

# Statements built once, values passed as parameters: building one per call (and its cache
# key over literal values) cost more CPU than executing it.
_INSERT_EVENT = insert(audit_events)
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

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sealer = threading.Lock()
        self._schedule_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._last_pass = 0.0
        self._appended = False
        self._closed = False

    @classmethod
    def open(cls, url: Secret, *, workers: int = 4) -> AuditStore:
        return cls(make_engine(url, workers=workers))

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

    @staticmethod
    def _append(connection: Connection, values: dict[str, Any]) -> None:
        connection.execute(_INSERT_EVENT, values)
        connection.info[_APPENDED] = True

    # -- sealing ----------------------------------------------------------------

    def seal_soon(self) -> None:
        """Have committed events sealed within ``SEAL_INTERVAL``, on a timer thread.

        Requests arriving while a pass is scheduled join it, so a busy process makes
        at most one pass per interval, and writers never wait for one. Sealing is
        bookkeeping after commits that already succeeded: if a pass fails, the events
        stay unsealed (and valid) until the next one.
        """
        with self._schedule_lock:
            if self._timer is not None or self._closed:
                return
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
        except SQLAlchemyError as exc:
            log.warning("audit_seal_deferred", error=scrub(str(getattr(exc, "orig", exc))).strip())
            return
        if count is None:
            # Another process holds the chain head; it may have missed our newest events.
            self.seal_soon()

    def seal(self) -> int:
        """Seal every committed unsealed event, waiting for other sealers; how many were sealed."""
        sealed = 0
        with self._errors(), self._sealer:
            while count := self._seal_pass(wait=True):
                sealed += count
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
            rows = connection.execute(
                select(audit_events)
                .where(events.seq.is_(None))
                .order_by(events.id)
                .limit(SEAL_BATCH)
            ).all()
            if not rows:
                return 0
            prev, seq = locked.last_hash, locked.last_seq
            seals = []
            for row in rows:
                seq += 1
                digest = event_hash(prev, row._asdict())
                seals.append({"event_id": row.id, "b_seq": seq, "prev": prev, "digest": digest})
                prev = digest
            connection.execute(
                update(audit_events)
                .where(events.id == bindparam("event_id"))
                .values(
                    seq=bindparam("b_seq"), prev_hash=bindparam("prev"), hash=bindparam("digest")
                ),
                seals,
            )
            connection.execute(
                update(audit_chain_head).where(head.id == 1).values(last_hash=prev, last_seq=seq)
            )
        return len(rows)

    def verify_chain(self) -> ChainReport:
        """Seal what is pending, then recompute every hash in chain order; report the first break.

        The chain starts at the newest prune's anchor (the hash of the last event it
        removed), or at the empty string.
        """
        self.seal()
        events = audit_events.c
        anchor = ""
        with self.transaction() as connection:
            last_prune = connection.execute(
                select(events.details)
                .where(
                    events.step == "prune", events.outcome == "succeeded", events.seq.is_not(None)
                )
                .order_by(events.seq.desc())
                .limit(1)
            ).scalar()
            if last_prune:
                anchor = str(last_prune.get("last_pruned_hash") or "")
            rows = connection.execution_options(yield_per=5000).execute(
                select(audit_events).where(events.seq.is_not(None)).order_by(events.seq)
            )
            expected_prev = anchor
            checked = 0
            for row in rows:
                values = row._asdict()
                if values["prev_hash"] != expected_prev:
                    return ChainReport(
                        checked,
                        row.id,
                        f"event {row.id} does not follow the event before it "
                        "(an event was removed or inserted)",
                    )
                if event_hash(values["prev_hash"], values) != values["hash"]:
                    return ChainReport(
                        checked, row.id, f"event {row.id} was changed after it was written"
                    )
                expected_prev = values["hash"]
                checked += 1
        return ChainReport(checked, None, None)

    def prune(self, before: datetime) -> int:
        """Delete the chain's oldest events, up to the first one at or after ``before``.

        A summary event records the hash of the last event removed, so the rest of
        the chain stays verifiable from it.
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
        except AuditStoreError as exc:
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
        limit: int | None = None,
    ) -> list[AuditEvent]:
        query = select(*_EVENT_COLUMNS).order_by(audit_events.c.id)
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
        return [AuditEvent(*row) for row in rows]

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
            try:
                connection.execute(
                    _INSERT_ROTATION, {f: getattr(record, f) for f in _ROTATION_FIELDS}
                )
            except IntegrityError:
                raise LockLost(
                    f"policy {record.policy} already has an unfinished rotation: another process "
                    "started it while this one believed it held the policy's lock"
                ) from None
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
                .values(fence=rotations.c.fence + 1)
            ).rowcount
        if not claimed:
            raise _fenced_off(rotation)
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
            self.record_event(
                rotation.policy,
                step,
                outcome,
                rotation_id=rotation.id,
                details=details,
                connection=connection,
            )
            if policy_state is not None:
                self.set_policy_state(rotation.policy, connection=connection, **policy_state)
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

    def policy_overview(self) -> list[tuple[str, datetime | None, datetime | None, bool]]:
        """Per policy: since when its key is current, last completed rotation, attention flag."""
        with self.transaction() as connection:
            states = {
                row.policy: row.last_rotated_at or row.adopted_at
                for row in connection.execute(select(policy_state)).all()
            }
            completed = dict(
                connection.execute(
                    select(rotations.c.policy, func.max(rotations.c.completed_at))
                    .where(rotations.c.state == "completed")
                    .group_by(rotations.c.policy)
                ).all()
            )
            flagged = set(
                connection.execute(
                    select(rotations.c.policy).where(
                        rotations.c.needs_attention.is_(True),
                        rotations.c.state.not_in(TERMINAL_STATES),
                    )
                ).scalars()
            )
        names = sorted(set(states) | set(completed) | flagged)
        return [(n, states.get(n), completed.get(n), n in flagged) for n in names]

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

    @staticmethod
    def _upsert_policy_state(connection: Connection, policy: str, values: dict[str, Any]) -> None:
        changed = connection.execute(_UPDATE_POLICY_STATE, {"b_policy": policy, **values}).rowcount
        if not changed:
            connection.execute(_INSERT_POLICY_STATE, {"policy": policy, **values})

    def dispose(self) -> None:
        self.engine.dispose()
