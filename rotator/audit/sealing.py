"""Sealing the audit chain: giving committed events their position and hash, then anchoring.

An event is inserted unsealed (MACed by its writer when an audit key is configured),
and within ``SEAL_INTERVAL`` of its commit a sealing pass on the sealer's thread gives
every committed unsealed event its position ``seq``, ``prev_hash`` and ``hash`` in
one batch, then records the new head in the anchor outside the database. Sealing in
the writer's own transaction would make every rotation step in the database queue on
one row; sealed afterwards, only the sealer takes that lock, and it skips rather than
waits when another process holds it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from sqlalchemy import Engine, Text, bindparam, cast, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from rotator.audit.chain import AnchorPoint, ChainTrust, event_hash, event_mac, link_mac
from rotator.audit.tables import audit_chain_head, audit_events
from rotator.errors import RotatorError
from rotator.log import get_logger
from rotator.secret import scrub

log = get_logger(__name__)

#: Events sealed per transaction: bounds the sealer's lock hold and memory.
SEAL_BATCH = 2000
#: Seconds between sealing passes: the most an event waits to be sealed while rotator runs.
SEAL_INTERVAL = 0.1
#: Seconds the sealer's thread waits for work before it ends (the next request starts another).
SEALER_IDLE = 5.0
#: Seconds between two anchor writes to Vault by one process: the newest events sealed
#: within it are not yet covered by the anchor.
ANCHOR_INTERVAL = 1.0

_SEAL_EVENT = (
    update(audit_events)
    .where(audit_events.c.id == bindparam("event_id"))
    .values(seq=bindparam("b_seq"), prev_hash=bindparam("prev"), hash=bindparam("digest"))
)
# PostgreSQL: a batch's seals and the new head as one statement over arrays, sent to the
# driver as it is (an executemany runs the UPDATE once per event, each through SQLAlchemy's
# machinery, and the head's own UPDATE would be another round trip).
_SEAL_EVENTS_PG = (
    "WITH sealed AS (UPDATE audit_events AS e SET seq = s.seq, prev_hash = s.prev, "
    "hash = s.digest FROM unnest(%(ids)s::bigint[], %(seqs)s::bigint[], %(prevs)s::text[], "
    "%(digests)s::text[]) AS s(id, seq, prev, digest) WHERE e.id = s.id) "
    "UPDATE audit_chain_head SET last_hash = %(b_hash)s, last_seq = %(b_seq)s WHERE id = 1"
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
# A pass runs up to ten times a second while rotations write events: its statements are
# built once (building them and their cache keys cost more CPU than running them).
_HEAD = audit_chain_head.c
_TAKE_HEAD = update(audit_chain_head).where(_HEAD.id == 1).values(last_seq=_HEAD.last_seq)
_LOCK_HEAD = select(_HEAD.last_hash, _HEAD.last_seq).where(_HEAD.id == 1).with_for_update()
_LOCK_HEAD_OR_SKIP = (
    select(_HEAD.last_hash, _HEAD.last_seq).where(_HEAD.id == 1).with_for_update(skip_locked=True)
)
_UNSEALED = (
    select(*_SEAL_COLUMNS)
    .where(audit_events.c.seq.is_(None))
    .order_by(audit_events.c.id)
    .limit(SEAL_BATCH)
)
_MOVE_HEAD = (
    update(audit_chain_head)
    .where(_HEAD.id == 1)
    .values(last_hash=bindparam("b_hash"), last_seq=bindparam("b_seq"))
)


class ChainSealer:
    """Seals one process's committed events into the chain and keeps the anchor moving."""

    def __init__(self, engine: Engine, trust: ChainTrust | None) -> None:
        self.engine = engine
        self.trust = trust
        self._sealer = threading.Lock()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        #: When the requested pass is to run (monotonic); None while none is requested.
        self._due: float | None = None
        self._last_pass = 0.0
        self._closed = False
        self._head: AnchorPoint | None = None
        self._anchored_seq = 0
        self._anchored_at = -ANCHOR_INTERVAL

    def seal_soon(self, delay: float | None = None) -> None:
        """Have committed events sealed within ``SEAL_INTERVAL`` (or ``delay``), off the caller.

        Requests arriving while a pass is requested join it, so a busy process makes
        at most one pass per interval, and writers never wait for one. Sealing is
        bookkeeping after commits that already succeeded: if a pass fails, the events
        stay unsealed (and valid) until the next one.
        """
        # Called after every write: a pass already requested has not read the events yet
        # (the thread clears ``_due`` before it reads), so it covers this request; checked
        # without the lock first, as most requests join one.
        if self._due is not None or self._closed:
            return
        with self._wake:
            if self._due is not None or self._closed:
                return
            now = time.monotonic()
            self._due = (
                now + delay if delay is not None else max(now, self._last_pass + SEAL_INTERVAL)
            )
            if self._thread is None:
                # One long-lived thread rather than a timer thread per pass.
                self._thread = threading.Thread(
                    target=self._serve, name="rotator-audit-sealer", daemon=True
                )
                self._thread.start()
            else:
                self._wake.notify()

    def _serve(self) -> None:
        """The sealer's thread: run each requested pass when due; end when idle or stopped."""
        while True:
            with self._wake:
                while not self._closed:
                    if self._due is None:
                        if not self._wake.wait(SEALER_IDLE) and self._due is None:
                            self._thread = None
                            return
                        continue
                    wait = self._due - time.monotonic()
                    if wait <= 0:
                        break
                    self._wake.wait(wait)
                if self._closed:
                    self._thread = None
                    return
                self._due = None
                self._last_pass = time.monotonic()
            self._timed_seal()

    def _timed_seal(self) -> None:
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
        with self._sealer:
            while count := self._seal_pass(wait=True):
                sealed += count
            self._anchor(force=True)
        return sealed

    def _seal_pass(self, *, wait: bool) -> int | None:
        """Seal up to ``SEAL_BATCH`` events in one transaction.

        Returns how many were sealed, or ``None`` when (``wait`` false) another
        process holds the chain head.
        """
        with self.engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                # Take SQLite's write lock first so two sealers cannot deadlock upgrading to it.
                connection.execute(_TAKE_HEAD)
            locked = connection.execute(_LOCK_HEAD if wait else _LOCK_HEAD_OR_SKIP).first()
            if locked is None:
                return None
            prev, seq = locked.last_hash, locked.last_seq
            rows = connection.execute(_UNSEALED).all()
            seals = []
            for row in rows:
                digest = self._link(row, prev, seq + 1)
                if digest is None:
                    break
                seq += 1
                seals.append({"event_id": row.id, "b_seq": seq, "prev": prev, "digest": digest})
                prev = digest
            head = {"b_hash": prev, "b_seq": seq}
            if seals and connection.dialect.name == "postgresql":
                connection.exec_driver_sql(
                    _SEAL_EVENTS_PG,
                    {
                        "ids": [seal["event_id"] for seal in seals],
                        "seqs": [seal["b_seq"] for seal in seals],
                        "prevs": [seal["prev"] for seal in seals],
                        "digests": [seal["digest"] for seal in seals],
                        **head,
                    },
                )
            elif seals:
                connection.execute(_SEAL_EVENT, seals)
                connection.execute(_MOVE_HEAD, head)
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

    def stop(self) -> None:
        """Drop the pending pass and end the sealer's thread; later requests are ignored.

        A pass already running finishes (``seal`` waits for it).
        """
        with self._wake:
            self._closed = True
            self._due = None
            self._wake.notify()
