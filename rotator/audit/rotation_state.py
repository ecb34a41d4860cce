"""Rotation rows and per-policy state: what a rotation has done, and each policy's current key.

Each write is fenced (a process that lost a rotation to another writes nothing) and
goes with the event that records it: on PostgreSQL as one statement sent outside a
transaction (one round trip a step), on SQLite in one transaction (rotator/audit/events.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import (
    CTE,
    Boolean,
    Connection,
    Insert,
    Row,
    Select,
    String,
    and_,
    bindparam,
    case,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from rotator.audit.events import DetailValue, EventLog, event_after, event_param, utcnow
from rotator.audit.records import EventOutcome, Pause, PolicyState, Step
from rotator.audit.tables import policy_pauses, policy_state, rotations
from rotator.audit.verify import row_changes
from rotator.errors import AuditStoreError, LockLost
from rotator.secret import scrub
from rotator.vocabulary import TERMINAL_STATES, State, Strategy


@dataclass(frozen=True)
class RotationRecord:
    """One row of ``rotations``: everything needed to resume a rotation after a crash."""

    id: str
    policy: str
    provider: str
    strategy: Strategy
    state: State
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
    #: Who rolled the rotation back during grace, why, and the Vault version restored.
    rollback_reason: str | None = None
    rolled_back_by: str | None = None
    restored_vault_version: int | None = None
    #: The earliest use of the new key the vendor reported during grace.
    new_key_first_used_at: datetime | None = None


@dataclass(frozen=True)
class PolicyRows:
    """What decides whether and how a rotation of a policy starts: its pause (in force or
    not: the caller's clock decides), its unfinished rotation and its state row."""

    pause: Pause | None
    active: RotationRecord | None
    state: PolicyState | None

    def pause_at(self, now: datetime) -> Pause | None:
        """The pause, if it holds at ``now``."""
        return self.pause if self.pause is not None and self.pause.holds_at(now) else None


class StepChanges(TypedDict, total=False):
    """What a step may change on a rotation besides its state.

    A rotation's identity, origin and fence are not among them: they never change
    (the fence moves only by ``claim_rotation``). Names and types are those of
    ``RotationRecord``'s fields (tests/test_fencing.py keeps them so).
    """

    emergency: bool
    new_key_id: str | None
    new_secret_fingerprint: str | None
    vault_base_version: int | None
    vault_version: int | None
    grace_until: datetime | None
    needs_attention: bool
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    completed_at: datetime | None
    grace_started_at: datetime | None
    grace_original_until: datetime | None
    old_key_calls_at_grace: int | None
    rollback_reason: str | None
    rolled_back_by: str | None
    restored_vault_version: int | None
    new_key_first_used_at: datetime | None


class RotationChanges(StepChanges, total=False):
    state: State


class PolicyStateChanges(TypedDict, total=False):
    """What may change on a policy's row: names and types of ``PolicyState``'s fields."""

    current_key_id: str | None
    vault_version: int | None
    last_rotated_at: datetime | None
    last_rotation_id: str | None
    adopted_at: datetime | None
    attention: str | None


_ROTATION_FIELDS = tuple(f.name for f in fields(RotationRecord))
_POLICY_STATE_FIELDS = tuple(policy_state.c.keys())
_INSERT_ROTATION = insert(rotations)
_UPDATE_ROTATION = update(rotations).where(
    rotations.c.id == bindparam("b_id"), rotations.c.fence == bindparam("b_fence")
)
_INSERT_POLICY_STATE = insert(policy_state)
_UPDATE_POLICY_STATE = update(policy_state).where(policy_state.c.policy == bindparam("b_policy"))
_SELECT_ROTATION = select(rotations).where(rotations.c.id == bindparam("b_id"))
_SELECT_ACTIVE_ROTATION = (
    select(rotations)
    .where(rotations.c.policy == bindparam("b_policy"), rotations.c.state.not_in(TERMINAL_STATES))
    .order_by(rotations.c.created_at.desc())
)
_SELECT_POLICY_STATE = select(policy_state).where(policy_state.c.policy == bindparam("b_policy"))
_ROWS_PREFIXES = ((policy_pauses, "p_"), (rotations, "r_"), (policy_state, "s_"))


def _select_policy_rows() -> Select[Any]:
    """The policy's pause, unfinished rotation and state as one row, each table's columns
    named with its prefix (``_ROWS_PREFIXES``); a table with no row gives NULLs.

    Joined to a one-row table of the policy's name, so a policy with no row anywhere still
    gets its (empty) row. The unique index ``ix_rotations_one_unfinished`` allows at most one
    unfinished rotation, so the joins never give more than one row.
    """
    asked = select(bindparam("b_policy", type_=String).label("policy")).subquery("asked")
    joined = (
        asked.outerjoin(policy_pauses, policy_pauses.c.policy == asked.c.policy)
        .outerjoin(
            rotations,
            and_(rotations.c.policy == asked.c.policy, rotations.c.state.not_in(TERMINAL_STATES)),
        )
        .outerjoin(policy_state, policy_state.c.policy == asked.c.policy)
    )
    columns = [
        column.label(prefix + column.name) for table, prefix in _ROWS_PREFIXES for column in table.c
    ]
    return select(*columns).select_from(joined)


_SELECT_POLICY_ROWS = _select_policy_rows()


def _row_values(columns: tuple[str, ...]) -> dict[str, Any]:
    return {name: bindparam(f"v_{name}", type_=rotations.c[name].type) for name in columns}


# PostgreSQL: a rotation's change and its event as one statement (see ``event_after``); the
# values are the parameters named ``v_<column>``.
_INSERT_ROTATION_WITH_EVENT = event_after(
    insert(rotations)
    .values(_row_values(_ROTATION_FIELDS))
    .returning(literal_column("1"))
    .cte("written")
)


@functools.cache
def _update_rotation_with_event(columns: tuple[str, ...]) -> Insert:
    """The fenced update of ``columns`` and its event; one statement per set of columns, so
    SQLAlchemy compiles each once."""
    return event_after(_fenced_update(columns))


def _fenced_update(columns: tuple[str, ...]) -> CTE:
    """The update of ``columns`` of the rotation ``b_id`` still at fence ``b_fence``, as the
    CTE ``written`` (a row, or none when the fence moved on)."""
    return (
        update(rotations)
        .where(rotations.c.id == bindparam("b_id"), rotations.c.fence == bindparam("b_fence"))
        .values(_row_values(columns))
        .returning(literal_column("1"))
        .cte("written")
    )


@functools.cache
def _finish_with_event(columns: tuple[str, ...], state_columns: tuple[str, ...]) -> Insert:
    """The fenced update of ``columns``, the upsert of the policy's ``state_columns``, and
    their event, as one statement (a finished rotation moves the policy's current key).

    The event records the policy's whole row when the upsert inserts it, and only the
    columns written when it updates one: both are passed (``write_with_event``'s
    ``changes_if_inserted``), and the upsert tells which happened (``xmax`` is 0 on a row
    version its own statement inserted). The policy's values are the parameters named
    ``s_<column>``.
    """
    written = _fenced_update(columns)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    names = _POLICY_STATE_FIELDS
    upsert = pg_insert(policy_state).from_select(
        names,
        select(
            *(bindparam(f"s_{name}", type_=policy_state.c[name].type) for name in names)
        ).select_from(written),
    )
    state = (
        upsert.on_conflict_do_update(
            index_elements=[policy_state.c.policy],
            set_={name: upsert.excluded[name] for name in state_columns},
        )
        .returning(literal_column("xmax = 0", Boolean).label("inserted"))
        .cte("state")
    )
    return event_after(
        state,
        chosen={
            name: case((state.c.inserted, event_param(f"{name}_inserted")), else_=event_param(name))
            for name in ("changes", "mac")
        },
    )


def _record(row: Row[Any] | Mapping[str, Any]) -> RotationRecord:
    """A ``rotations`` row as a record, its state and strategy checked against the words this
    version knows."""
    values = dict(row) if isinstance(row, Mapping) else row._asdict()
    try:
        values["state"] = State(values["state"])
        values["strategy"] = Strategy(values["strategy"])
    except ValueError as exc:
        raise AuditStoreError(
            f"rotation {values['id']} of policy {values['policy']}: {exc}, which this version "
            "of rotator does not know: a newer version wrote it; run that version (or a newer "
            "one) against this database"
        ) from None
    return RotationRecord(**values)


def _fenced_off(rotation: RotationRecord) -> LockLost:
    return LockLost(
        f"policy {rotation.policy}: rotation {rotation.id} was taken over by another process "
        "(this one lost the policy's lock); this process stopped and wrote nothing more"
    )


class RotationState(EventLog):
    """The ``rotations`` and ``policy_state`` tables, each write with its event."""

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

    def create_rotation(
        self,
        record: RotationRecord,
        *,
        details: Mapping[str, DetailValue],
        session: Connection | None = None,
    ) -> None:
        """Insert a new rotation; ``LockLost`` if the policy already has an unfinished one.

        ``session``: on PostgreSQL, the autocommit connection to write on (the lock's).
        """
        values = {f: getattr(record, f) for f in _ROTATION_FIELDS}
        taken = LockLost(
            f"policy {record.policy} already has an unfinished rotation: another process "
            "started it while this one believed it held the policy's lock"
        )
        if self.one_statement:
            self.write_with_event(
                _INSERT_ROTATION_WITH_EVENT,
                {f"v_{name}": value for name, value in values.items()},
                policy=record.policy,
                step="plan",
                outcome="succeeded",
                rotation_id=record.id,
                details=details,
                changes={"rotations": {record.id: row_changes(values)}},
                conflict=taken,
                session=session,
            )
            return
        with self.transaction() as connection:
            try:
                connection.execute(_INSERT_ROTATION, values)
            except IntegrityError:
                raise taken from None
            self.note_changes(connection, "rotations", record.id, values)
            self.record_event(
                record.policy,
                "plan",
                "succeeded",
                rotation_id=record.id,
                details=details,
                connection=connection,
            )

    def claim_rotation(
        self, rotation: RotationRecord, *, session: Connection | None = None
    ) -> RotationRecord:
        """Take ``rotation`` over: bump its fence, so whoever worked on it before is fenced off.

        ``LockLost`` if the fence moved since ``rotation`` was read (someone else took it).
        ``session`` as for ``update_rotation``.
        """
        self._fenced_update(
            rotation,
            {"fence": rotation.fence + 1},
            step="fence",
            outcome="claimed",
            details={"fence": rotation.fence + 1, "state": rotation.state},
            session=session,
        )
        return dataclasses.replace(rotation, fence=rotation.fence + 1)

    def update_rotation(
        self,
        rotation: RotationRecord,
        *,
        step: Step,
        outcome: EventOutcome,
        details: Mapping[str, DetailValue] | None = None,
        policy_state: PolicyStateChanges | None = None,
        session: Connection | None = None,
        **changes: Unpack[RotationChanges],
    ) -> RotationRecord:
        """Apply ``changes`` to the row and log the step's event in one transaction.

        ``policy_state`` values, when given, update the policy's row in the same
        transaction (a finished rotation moves the policy's current key with it).
        Nothing is written, and ``LockLost`` raised, if another process has taken
        the rotation over since ``rotation`` was claimed (its fence moved).
        ``session``: on PostgreSQL, the autocommit connection to make the one statement
        on (the policy lock's).
        """
        if changes.get("last_error") is not None:
            changes["last_error"] = scrub(str(changes["last_error"]))[:2000]
        updated = dataclasses.replace(rotation, **changes, updated_at=utcnow())
        written = {**changes, "updated_at": updated.updated_at}
        self._fenced_update(
            rotation,
            written,
            step=step,
            outcome=outcome,
            details=details,
            policy_state=policy_state,
            session=session,
        )
        return updated

    def _fenced_update(
        self,
        rotation: RotationRecord,
        written: dict[str, Any],
        *,
        step: Step,
        outcome: EventOutcome,
        details: Mapping[str, DetailValue] | None,
        policy_state: PolicyStateChanges | None = None,
        session: Connection | None = None,
    ) -> None:
        """Write ``written`` to the rotation's row unless its fence moved, with the event."""
        # A caller counts a write on ``session`` as proof its lock was held: it must be made.
        assert session is None or self.one_statement
        if self.one_statement:
            statement = _update_rotation_with_event(tuple(written))
            params = {
                "b_id": rotation.id,
                "b_fence": rotation.fence,
                **{f"v_{name}": value for name, value in written.items()},
            }
            changes: dict[str, Any] = {"rotations": {rotation.id: row_changes(written)}}
            changes_if_inserted = None
            if policy_state is not None:
                state = {**policy_state, "updated_at": utcnow()}
                whole_row = {
                    **dict.fromkeys(_POLICY_STATE_FIELDS),
                    **state,
                    "policy": rotation.policy,
                }
                statement = _finish_with_event(tuple(written), tuple(state))
                params.update({f"s_{name}": value for name, value in whole_row.items()})
                changes_if_inserted = {
                    **changes,
                    "policy_state": {rotation.policy: row_changes(whole_row)},
                }
                changes["policy_state"] = {rotation.policy: row_changes(state)}
            count = self.write_with_event(
                statement,
                params,
                policy=rotation.policy,
                step=step,
                outcome=outcome,
                rotation_id=rotation.id,
                details=details,
                changes=changes,
                changes_if_inserted=changes_if_inserted,
                session=session,
            )
            if not count:
                raise _fenced_off(rotation)
            return
        with self.transaction() as connection:
            count = connection.execute(
                _UPDATE_ROTATION, {"b_id": rotation.id, "b_fence": rotation.fence, **written}
            ).rowcount
            if not count:
                raise _fenced_off(rotation)
            self.note_changes(connection, "rotations", rotation.id, written)
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

    def rotation(self, rotation_id: str) -> RotationRecord | None:
        with self.reading() as connection:
            row = connection.execute(_SELECT_ROTATION, {"b_id": rotation_id}).first()
        return _record(row) if row else None

    def active_rotation(self, policy: str) -> RotationRecord | None:
        """The policy's unfinished rotation, if any (at most one exists, under the lock)."""
        with self.reading() as connection:
            row = connection.execute(_SELECT_ACTIVE_ROTATION, {"b_policy": policy}).first()
        return _record(row) if row else None

    def rotations_for(self, policy: str) -> list[RotationRecord]:
        with self.transaction() as connection:
            rows = connection.execute(
                select(rotations)
                .where(rotations.c.policy == policy)
                .order_by(rotations.c.created_at)
            )
            return [_record(row) for row in rows]

    def unfinished_rotations(self) -> list[RotationRecord]:
        with self.reading() as connection:
            rows = connection.execute(
                select(rotations)
                .where(rotations.c.state.not_in(TERMINAL_STATES))
                .order_by(rotations.c.created_at)
            ).all()
        return [_record(row) for row in rows]

    def all_policy_states(self) -> dict[str, PolicyState]:
        result = {}
        with self.reading() as connection:
            # Row by row: 10,000 rows held beside their 10,000 states would double the peak
            # of a daemon's start and of every scrape, which its RSS keeps.
            for row in connection.execute(select(policy_state)):
                values = row._asdict()
                values.pop("updated_at")
                result[row.policy] = PolicyState(**values)
        return result

    def policy_state(self, policy: str, *, session: Connection | None = None) -> PolicyState | None:
        """The policy's row, if any; ``session`` as for ``reading``."""
        with self.reading(session) as connection:
            row = connection.execute(_SELECT_POLICY_STATE, {"b_policy": policy}).first()
        if row is None:
            return None
        values = row._asdict()
        values.pop("updated_at")
        return PolicyState(**values)

    def policy_rows(self, policy: str, *, session: Connection | None = None) -> PolicyRows:
        """The policy's pause, unfinished rotation and state, read in one statement (they
        decide whether a rotation starts, and how); ``session`` as for ``reading``."""
        with self.reading(session) as connection:
            row = connection.execute(_SELECT_POLICY_ROWS, {"b_policy": policy}).one()._asdict()
        tables = {
            prefix: {
                name.removeprefix(prefix): value
                for name, value in row.items()
                if name.startswith(prefix)
            }
            for _, prefix in _ROWS_PREFIXES
        }
        pause, active, state = tables["p_"], tables["r_"], tables["s_"]
        state.pop("updated_at")
        return PolicyRows(
            pause=Pause(**pause) if pause["policy"] is not None else None,
            active=_record(active) if active["id"] is not None else None,
            state=PolicyState(**state) if state["policy"] is not None else None,
        )

    def set_policy_state(
        self,
        policy: str,
        *,
        connection: Connection | None = None,
        **changes: Unpack[PolicyStateChanges],
    ) -> None:
        values = {**changes, "updated_at": utcnow()}
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
        cls.note_changes(connection, "policy_state", policy, values)
