"""The append-only event log: each change written with its event, and queries over events.

Every state change and the event that records it are written in one transaction (on
PostgreSQL a rotation step's change and event are one statement, see ``event_after``),
so the log never disagrees with the state: row values written in a transaction ride
along in the next event's ``changes``. Event details are plain values; a ``Secret``
handed to them is refused, and any text holding a live secret's value is scrubbed
before it is stored. Committed events are sealed into the chain afterwards
(rotator/audit/sealing.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    CTE,
    JSON,
    ColumnElement,
    Connection,
    Engine,
    Insert,
    Text,
    bindparam,
    cast,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from rotator.audit.actor import current_actor
from rotator.audit.chain import ChainTrust, canonical_json, event_mac
from rotator.audit.driver import DriverStatements
from rotator.audit.records import EventOutcome, Step
from rotator.audit.sealing import ChainSealer
from rotator.audit.tables import audit_events
from rotator.audit.verify import row_changes
from rotator.errors import AuditStoreError, SecretLeakError
from rotator.secret import Secret, scrub

DetailValue = str | int | float | bool | None
ACTOR = current_actor()


def utcnow() -> datetime:
    return datetime.now(UTC)


class Backlog(NamedTuple):
    """Events written but not yet sealed into the chain."""

    events: int
    oldest: datetime | None


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


#: Marks, in a connection's ``info``, a transaction that appended events.
_APPENDED = "rotator.audit.appended"
#: Row values written in a transaction, waiting for the event that records them.
_CHANGES = "rotator.audit.changes"

# Selected in AuditEvent's field order, so a row builds an event positionally (long histories).
_EVENT_COLUMNS = tuple(audit_events.c[f.name] for f in fields(AuditEvent))
# Statements built once, values passed as parameters: building one per call (and its cache
# key over literal values) cost more CPU than executing it.
_INSERT_EVENT = insert(audit_events)
#: The columns a writer sets on an event (the sealer sets the rest).
_WRITTEN_COLUMNS = (
    "at",
    "policy",
    "rotation_id",
    "step",
    "outcome",
    "actor",
    "details",
    "changes",
    "key_version",
    "nonce",
    "mac",
)


def event_param(name: str) -> ColumnElement[Any]:
    """The event value parameter ``name`` (an event column, or a variant of one) in an
    ``event_after`` statement: JSON columns are passed as their canonical text, the one a
    keyed event's MAC covers, so it is serialised once."""
    column = audit_events.c[name.removesuffix("_inserted")]
    if isinstance(column.type, JSON):
        return cast(bindparam(f"e_{name}", type_=Text), column.type)
    return bindparam(f"e_{name}", type_=column.type)


def event_after(written: CTE, *, chosen: Mapping[str, ColumnElement[Any]] | None = None) -> Insert:
    """An INSERT of one event per row the data-modifying ``written`` returns.

    Row change and event go to PostgreSQL as one statement, sent outside a transaction:
    a single statement commits or fails whole, and costs one round trip instead of four
    (BEGIN, the change, the event, COMMIT). A change that matches no row (a fenced-off
    update) inserts no event. Event values are the parameters named ``e_<column>``
    (``event_param``), except the columns ``chosen`` gives an expression for (over
    ``written``'s columns).
    """
    chosen = chosen or {}
    values = select(
        *(chosen.get(name, event_param(name)) for name in _WRITTEN_COLUMNS)
    ).select_from(written)
    return insert(audit_events).from_select(_WRITTEN_COLUMNS, values).returning(audit_events.c.id)


def _clean_details(details: Mapping[str, DetailValue]) -> dict[str, DetailValue]:
    clean: dict[str, DetailValue] = {}
    for key, value in details.items():
        if isinstance(value, Secret):
            raise SecretLeakError(f"audit detail {key!r} is a Secret; audit rows never hold one")
        clean[key] = scrub(value) if isinstance(value, str) else value
    return clean


class EventLog:
    """Transactions over the audit database, and the events written and read in them."""

    def __init__(self, engine: Engine, trust: ChainTrust | None = None) -> None:
        self.engine = engine
        self.sealer = ChainSealer(engine, trust)
        self._appended = False
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._driver = DriverStatements(engine.dialect)

    @property
    def trust(self) -> ChainTrust | None:
        """The audit key and anchor; None keeps the chain unkeyed (see chain.py)."""
        return self.sealer.trust

    @trust.setter
    def trust(self, trust: ChainTrust | None) -> None:
        # The engine attaches it after opening the store: writer and sealer must agree.
        self.sealer.trust = trust

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def one_statement(self) -> bool:
        """Whether a row change and its event go as one statement (``event_after``): on
        PostgreSQL; SQLite runs no INSERT or UPDATE inside a WITH, so it uses a transaction."""
        return self.engine.dialect.name == "postgresql"

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
                self._committed_events()

    @contextmanager
    def reading(self, session: Connection | None = None) -> Iterator[Connection]:
        """A connection for one read-only statement, sent outside a transaction.

        One statement sees one consistent snapshot either way; without BEGIN and COMMIT it
        costs one round trip instead of three (the engine reads a policy's rows several
        times per rotation). Anything that writes, or reads twice, uses ``transaction``.
        ``session``: an autocommit connection to read on (the policy lock's, which spares
        a pool checkout), else one from the pool.
        """
        with self._errors(), self._on(session) as connection:
            yield connection

    @contextmanager
    def _on(self, session: Connection | None) -> Iterator[Connection]:
        """``session`` if given, else an autocommit connection from the pool, checked out
        here: inside the caller's ``_errors``, so a database that refuses it is reported."""
        if session is not None:
            yield session
            return
        with self._autocommit.connect() as connection:
            yield connection

    def record_event(
        self,
        policy: str,
        step: Step,
        outcome: EventOutcome,
        *,
        rotation_id: str | None = None,
        details: Mapping[str, DetailValue] | None = None,
        connection: Connection | None = None,
    ) -> None:
        """Append an event: in ``connection``'s transaction, with the row changes noted in it,
        or else on its own (one statement, no transaction around it)."""
        if connection is not None:
            changes = connection.info.pop(_CHANGES, None)
            event = self._event(policy, step, outcome, rotation_id, details, changes)
            connection.execute(_INSERT_EVENT, event)
            connection.info[_APPENDED] = True
            return
        event = self._event(policy, step, outcome, rotation_id, details, None)
        with self._errors(), self._autocommit.connect() as conn:
            conn.execute(_INSERT_EVENT, event)
        self._committed_events()

    def write_with_event(
        self,
        statement: Insert,
        params: dict[str, Any],
        *,
        policy: str,
        step: Step,
        outcome: EventOutcome,
        rotation_id: str | None,
        details: Mapping[str, DetailValue] | None,
        changes: dict[str, Any],
        conflict: Exception | None = None,
        session: Connection | None = None,
        changes_if_inserted: dict[str, Any] | None = None,
    ) -> int:
        """Run a statement from ``event_after`` on its own; how many events it inserted.

        ``changes`` are the row values the statement writes, recorded in the event;
        ``conflict`` is raised if the statement breaks a unique index. ``session``: an
        autocommit connection to run it on (the policy lock's), else one from the pool.
        ``changes_if_inserted``: what the event records instead when the statement's upsert
        inserts its row; passed, with its MAC, as ``e_changes_inserted`` and ``e_mac_inserted``.
        """
        event = self._event(policy, step, outcome, rotation_id, details, changes, encoded=True)
        if changes_if_inserted is not None:
            other = self._event(
                policy,
                step,
                outcome,
                rotation_id,
                details,
                changes_if_inserted,
                like=event,
                encoded=True,
            )
            params.update(e_changes_inserted=other["changes"], e_mac_inserted=other["mac"])
        params.update({f"e_{name}": value for name, value in event.items()})
        with self._errors(), self._on(session) as connection:
            try:
                # Counted from RETURNING: rowcount came back -1 for this INSERT ... SELECT.
                count = len(self._driver.rows(connection, statement, params))
            except IntegrityError:
                if conflict is None:
                    raise
                raise conflict from None
        if count:
            self._committed_events()
        return count

    def _committed_events(self) -> None:
        self._appended = True
        self.sealer.seal_soon()

    def _event(
        self,
        policy: str,
        step: Step,
        outcome: EventOutcome,
        rotation_id: str | None,
        details: Mapping[str, DetailValue] | None,
        changes: dict[str, Any] | None,
        *,
        like: dict[str, Any] | None = None,
        encoded: bool = False,
    ) -> dict[str, Any]:
        """An event's column values, with the row changes it records and (keyed) its MAC.

        ``like``: another event's values whose time and nonce to take (the same event
        recording other changes). ``encoded``: JSON columns as their canonical text
        (for ``event_param``), else as values.
        """
        clean = _clean_details(details or {})
        # The text stored is the text MACed (chain.py).
        texts = (canonical_json(clean), None if changes is None else canonical_json(changes))
        values: dict[str, Any] = {
            # Whole microseconds survive every backend unchanged, so the hash can be recomputed.
            "at": utcnow() if like is None else like["at"],
            "policy": policy,
            "rotation_id": rotation_id,
            "step": step,
            "outcome": outcome,
            "actor": ACTOR,
            "details": clean,
            "changes": changes,
            "key_version": 0,
            "nonce": "",
            "mac": "",
        }
        if self.trust is not None:
            if like is None:
                version, key = self.trust.current_key()
                nonce = secrets.token_hex(16)
            else:
                version, nonce = like["key_version"], like["nonce"]
                key = self.trust.key(version)
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
                    *texts,
                ),
            )
        if encoded:
            values["details"], values["changes"] = texts
        return values

    @staticmethod
    def note_changes(
        connection: Connection, table: str, key: str, values: Mapping[str, Any]
    ) -> None:
        """Remember row values written in this transaction for the next event to record."""
        pending = connection.info.setdefault(_CHANGES, {})
        rows = pending.setdefault(table, {})
        if rows.get(key) is None:
            rows[key] = {}
        rows[key].update(row_changes(dict(values)))

    @staticmethod
    def note_removal(connection: Connection, table: str, key: str) -> None:
        """Remember that this transaction deleted a row, for the next event to record."""
        connection.info.setdefault(_CHANGES, {}).setdefault(table, {})[key] = None

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
        with self.reading() as connection:
            # .all() fetches the rows in one driver call; iterating fetches them one by one.
            rows = connection.execute(query).all()
        events = [AuditEvent(*row) for row in rows]
        return events[::-1] if newest_first else events

    def recorded_outcomes(self) -> set[str]:
        """Every outcome the log holds (a full scan: only asked about an unfamiliar one)."""
        with self.transaction() as connection:
            return set(connection.execute(select(audit_events.c.outcome).distinct()).scalars())

    def unsealed_backlog(self) -> Backlog:
        """How many events wait to be sealed into the chain, and when the oldest was written."""
        with self.transaction() as connection:
            count, oldest = connection.execute(
                select(func.count(), func.min(audit_events.c.at)).where(
                    audit_events.c.seq.is_(None)
                )
            ).one()
        return Backlog(int(count), oldest)
