"""The audit store: rotation state and the event log, and the chain's upkeep over them.

``AuditStore`` is what the rest of rotator opens: the event log
(rotator/audit/events.py), rotation rows and policy state
(rotator/audit/rotation_state.py) and sealing (rotator/audit/sealing.py) under one
object, plus the chain's maintenance (baseline, verify, prune) and the store's
lifecycle.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from rotator.audit import migrations
from rotator.audit.chain import ChainTrust, event_hash
from rotator.audit.connections import make_engine
from rotator.audit.events import AuditEvent, utcnow
from rotator.audit.rotation_state import RotationRecord, RotationState
from rotator.audit.tables import (
    audit_chain_head,
    audit_events,
    policy_pauses,
    policy_state,
    rotations,
)
from rotator.audit.verify import ChainReport, verify
from rotator.errors import RotatorError
from rotator.log import get_logger
from rotator.secret import Secret
from rotator.vocabulary import TERMINAL_STATES

log = get_logger(__name__)

__all__ = ["AuditEvent", "AuditStore", "ChainReport", "RotationRecord", "event_hash", "utcnow"]

#: Rows one baseline event records.
_BASELINE_ROWS = 500


class AuditStore(RotationState):
    """Rotation state and audit events in PostgreSQL (production) or SQLite (trials)."""

    @classmethod
    def open(cls, url: Secret, *, workers: int = 4, trust: ChainTrust | None = None) -> AuditStore:
        return cls(make_engine(url, workers=workers), trust)

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

    def seal_soon(self, delay: float | None = None) -> None:
        """Have committed events sealed shortly, on the sealer's timer thread."""
        self.sealer.seal_soon(delay)

    def seal(self) -> int:
        """Seal every committed unsealed event, waiting for other sealers; how many were sealed.

        The new head is anchored at once (rotator commands call this before they exit).
        """
        with self._errors():
            return self.sealer.seal()

    def record_baseline(self) -> int:
        """Vouch for the rows that decide revocations as they are now: record them in the chain.

        ``policy_state``, ``policy_pauses`` and unfinished ``rotations`` rows written before
        the chain was keyed (or whose events were pruned) are recorded by no event, so
        ``verify --state`` cannot check them until this is run. Returns how many rows were recorded.
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
            pauses = connection.execute(select(policy_pauses).with_for_update()).all()
            rows = [("policy_state", row.policy, row) for row in states]
            rows += [("rotations", row.id, row) for row in unfinished]
            rows += [("policy_pauses", row.policy, row) for row in pauses]
            for start in range(0, len(rows), _BASELINE_ROWS):
                chunk = rows[start : start + _BASELINE_ROWS]
                for table, key, row in chunk:
                    self.note_changes(connection, table, key, row._asdict())
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
        self.sealer.stop()
        try:
            if self._appended:
                self.seal()
        except RotatorError as exc:
            log.warning("audit_seal_deferred", error=str(exc))
        self.dispose()

    def dispose(self) -> None:
        self.engine.dispose()
