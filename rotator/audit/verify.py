"""Checking the audit chain, read-only: ``rotator audit verify``.

Recomputes every event's MAC and chain link in ``seq`` order, compares the newest
positions with the anchor kept outside the database, and reports events nobody sealed
(older than ``UNSEALED_GRACE``) and copies of events. With ``state`` it also replays the
row changes the verified events record and compares them with the current rows of
``rotations`` and ``policy_state``. It never writes: sealing here would give a row
someone inserted behind rotator's back a place in the chain.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Text, cast, func, select

from rotator.audit.chain import AnchorPoint, ChainTrust, MacKey, event_hash, event_mac, link_mac
from rotator.audit.records import TERMINAL_STATES
from rotator.audit.tables import audit_events, policy_pauses, policy_state, rotations
from rotator.errors import RotatorError

#: How long a committed event may wait for its sealing pass before it looks suspicious.
UNSEALED_GRACE = timedelta(seconds=10)
#: Rows streamed per fetch while verifying.
_FETCH = 5000
_EVENTS = audit_events.c
# The columns a MAC and a link cover, JSON columns as their stored text.
_CHAIN_COLUMNS = (
    _EVENTS.id,
    _EVENTS.seq,
    _EVENTS.at,
    _EVENTS.policy,
    _EVENTS.rotation_id,
    _EVENTS.step,
    _EVENTS.outcome,
    _EVENTS.actor,
    cast(_EVENTS.details, Text),
    cast(_EVENTS.changes, Text),
    _EVENTS.key_version,
    _EVENTS.nonce,
    _EVENTS.mac,
    _EVENTS.prev_hash,
    _EVENTS.hash,
)
# Per table with rows the chain records: the table, its key column, and its name in messages.
_TABLES = {
    "rotations": (rotations, "id", "rotation"),
    "policy_state": (policy_state, "policy", "policy"),
    "policy_pauses": (policy_pauses, "policy", "pause"),
}


@dataclass
class ChainReport:
    """What ``verify`` found; intact when there is no problem."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    #: The event at which the chain itself first breaks, if it does.
    broken_at: int | None = None
    #: Things the reader should know that are not (yet) a break: an unkeyed chain, say.
    notes: list[str] = field(default_factory=list)
    #: The chain ends in keyed events (and is anchored, or the anchor is a problem above).
    keyed: bool = False

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def problem(self) -> str | None:
        return self.problems[0] if self.problems else None

    def broken(self, event_id: int, problem: str) -> None:
        self.broken_at = event_id
        self.problems.append(f"event {event_id} {problem}")


class _Keys:
    """Key versions, each read from the trust once; a failure is remembered, not retried."""

    def __init__(self, trust: ChainTrust | None) -> None:
        self.trust = trust
        self._keys: dict[int, MacKey | str] = {}

    def get(self, version: int) -> MacKey | str:
        """The key, or why it cannot be had."""
        if version not in self._keys:
            if self.trust is None:
                self._keys[version] = (
                    f"is keyed (audit key version {version}) but no audit key is configured "
                    "(audit.key_path), so it cannot be verified"
                )
            else:
                try:
                    self._keys[version] = self.trust.key(version)
                except RotatorError as exc:
                    self._keys[version] = (
                        f"is keyed with audit key version {version}, which cannot be read "
                        f"from {self.trust.where} ({exc})"
                    )
        return self._keys[version]


def _plain(value: Any) -> Any:
    """A column value as the chain records it (JSON: datetimes as ISO text in UTC)."""
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


def row_changes(values: dict[str, Any]) -> dict[str, Any]:
    """Column values as an event's ``changes`` records them."""
    return {name: _plain(value) for name, value in values.items()}


class _StateReplay:
    """The rows the verified events' changes imply, newest value of each column."""

    def __init__(self) -> None:
        self.expected: dict[tuple[str, str], dict[str, Any]] = {}
        self.source: dict[tuple[str, str], int] = {}
        #: Rows whose newest event recorded their deletion.
        self.removed: set[tuple[str, str]] = set()

    def apply(self, event_id: int, changes: str | None) -> None:
        if changes is None:
            return
        for table, rows in json.loads(changes).items():
            for key, values in rows.items():
                self.source[(table, key)] = event_id
                if values is None:  # the event recorded the row's deletion
                    self.expected.pop((table, key), None)
                    self.removed.add((table, key))
                    continue
                self.removed.discard((table, key))
                self.expected.setdefault((table, key), {}).update(values)

    def compare(self, connection: Connection, report: ChainReport, *, complete: bool) -> None:
        uncovered = 0
        for table_name, (table, key_column, label) in _TABLES.items():
            for row in connection.execute(select(table)):
                values = row_changes(row._asdict())
                key = (table_name, str(values[key_column]))
                expected = self.expected.pop(key, None)
                if key in self.removed:
                    report.problems.append(
                        f"{label} {key[1]}: event {self.source[key]} recorded its deletion, but "
                        "the row is back (written behind rotator's back)"
                    )
                    continue
                if expected is None:
                    settled = table_name == "rotations" and values["state"] in TERMINAL_STATES
                    if complete or not settled:
                        report.problems.append(
                            f"{label} {key[1]}: its row is recorded by no event in the chain; "
                            "it was written behind rotator's back"
                            if complete
                            else f"{label} {key[1]}: its row is recorded by no event the chain "
                            "still holds (written before the chain was keyed, or pruned), so it "
                            "cannot be checked; once it is known to be right, 'rotator audit "
                            "baseline' records it"
                        )
                    else:
                        uncovered += 1
                    continue
                for column, value in expected.items():
                    if values.get(column) != value:
                        report.problems.append(
                            f"{label} {key[1]}: {column} is {values.get(column)!r} but event "
                            f"{self.source[key]} recorded {value!r}: the row was changed "
                            "outside rotator (edited or rolled back)"
                        )
        for table_name, name in sorted(self.expected):
            report.problems.append(
                f"{_TABLES[table_name][2]} {name}: event {self.source[(table_name, name)]} "
                "recorded it, but its row is gone (deleted outside rotator)"
            )
        if uncovered:
            report.notes.append(
                f"{uncovered} finished rotations predate the events the chain holds and were "
                "not checked"
            )


def verify(
    connection: Connection,
    trust: ChainTrust | None,
    *,
    state: bool = False,
    now: datetime | None = None,
) -> ChainReport:
    """Check the chain (and with ``state`` the rows) on ``connection``; write nothing."""
    report = ChainReport()
    if trust is None:
        report.notes.append(
            "UNKEYED: no audit key is configured (audit.key_path), so anyone who can write "
            "the database can edit events and recompute their hashes undetected; set "
            "audit.key_path (README: Security model)"
        )
    anchor = _read_anchor(trust, report)
    start, pruned_to = _start(connection)
    keys = _Keys(trust)
    replay = _StateReplay() if state else None
    result = connection.execution_options(yield_per=_FETCH).execute(
        select(*_CHAIN_COLUMNS).where(_EVENTS.seq.is_not(None)).order_by(_EVENTS.seq)
    )
    # Row by row from whole fetches: iterating the result itself fetches each row in a call.
    last = _walk(chain.from_iterable(result.partitions()), start, keys, anchor, report, replay)
    report.keyed = last.keyed
    if report.broken_at is None:
        _check_anchor(trust, anchor, last, pruned_to, report)
    _check_copies(connection, report)
    _check_unsealed(connection, keys, now or datetime.now(UTC), report, replay)
    if replay is not None:
        if report.intact:
            complete = start == "" and last.keyed_only and last.seq is not None
            replay.compare(connection, report, complete=complete)
        else:
            report.notes.append("rows were not compared: the chain itself is not intact")
    return report


@dataclass
class _Walked:
    """Where the walk along the chain ended."""

    seq: int | None = None
    hash: str = ""
    keyed: bool = False
    keyed_only: bool = True


def _read_anchor(trust: ChainTrust | None, report: ChainReport) -> AnchorPoint | None:
    if trust is None:
        return None
    try:
        # Read before the events: a sealer working meanwhile only moves the chain past it.
        return trust.read_anchor()
    except RotatorError as exc:
        report.problems.append(f"Vault's anchor cannot be read from {trust.where} ({exc})")
        return None


def _start(connection: Connection) -> tuple[str, int]:
    """The hash the chain starts from, and the last position pruned (0: nothing pruned)."""
    last_prune = connection.execute(
        select(_EVENTS.details)
        .where(_EVENTS.step == "prune", _EVENTS.outcome == "succeeded", _EVENTS.seq.is_not(None))
        .order_by(_EVENTS.seq.desc())
        .limit(1)
    ).scalar()
    if not last_prune:
        return "", 0
    return str(last_prune.get("last_pruned_hash") or ""), int(
        last_prune.get("last_pruned_seq") or 0
    )


def _walk(
    rows: Iterable[Any],
    start: str,
    keys: _Keys,
    anchor: AnchorPoint | None,
    report: ChainReport,
    replay: _StateReplay | None,
) -> _Walked:
    walked = _Walked(hash=start)
    expected_prev = start
    checked = 0
    for (
        event_id,
        seq,
        at,
        policy,
        rotation_id,
        step,
        outcome,
        actor,
        details,
        changes,
        version,
        nonce,
        mac,
        prev,
        digest,
    ) in rows:
        if prev != expected_prev:
            report.broken(
                event_id, "does not follow the event before it (an event was removed or inserted)"
            )
            break
        if version:
            key = keys.get(version)
            if isinstance(key, str):
                report.broken(event_id, key)
                break
            content_mac = event_mac(
                key, version, nonce, at, policy, rotation_id, step, outcome, actor, details, changes
            )
            if content_mac != mac:
                report.broken(
                    event_id,
                    "was changed after it was written, or not written by rotator "
                    "(its MAC does not match its content)",
                )
                break
            if link_mac(key, prev, seq, mac) != digest:
                report.broken(event_id, "was moved in the chain (its link does not match)")
                break
            walked.keyed = True
        else:
            walked.keyed_only = False
            if walked.keyed:
                report.broken(
                    event_id,
                    "carries no MAC although the chain before it is keyed: it was not written "
                    "by rotator",
                )
                break
            values = {
                "at": at,
                "policy": policy,
                "rotation_id": rotation_id,
                "step": step,
                "outcome": outcome,
                "actor": actor,
                "details": json.loads(details),
            }
            if event_hash(prev, values) != digest:
                report.broken(event_id, "was changed after it was written")
                break
        if anchor is not None and seq == anchor.seq and digest != anchor.hash:
            report.broken(
                event_id,
                f"at position {seq} differs from Vault's anchor: the chain was rewritten or "
                "restored from an older copy",
            )
            break
        if replay is not None:
            replay.apply(event_id, changes)
        expected_prev = digest
        walked.seq, walked.hash = seq, digest
        checked += 1
    report.checked = checked
    return walked


def _check_anchor(
    trust: ChainTrust | None,
    anchor: AnchorPoint | None,
    last: _Walked,
    pruned_to: int,
    report: ChainReport,
) -> None:
    if trust is None:
        return
    if anchor is None:
        if last.keyed:
            report.problems.append(
                f"Vault's anchor at {trust.where} is missing, but the chain holds keyed "
                "events: it was deleted, or no sealing pass could reach Vault"
            )
        return
    end = last.seq or 0
    if end < anchor.seq:
        report.problems.append(
            f"the chain ends at position {end} but Vault's anchor says events up to position "
            f"{anchor.seq} were sealed: the newest events were deleted, or the table was "
            "restored from an older copy"
        )
    elif anchor.seq <= pruned_to:
        # The anchored event was pruned since; the prune summary (keyed) vouches for it.
        return


def _check_copies(connection: Connection, report: ChainReport) -> None:
    """Every keyed MAC covers a fresh nonce, so two equal MACs are a copy of one event."""
    copies = connection.execute(
        select(func.min(_EVENTS.id), func.max(_EVENTS.id))
        .where(_EVENTS.mac != "")
        .group_by(_EVENTS.mac)
        .having(func.count() > 1)
    ).all()
    for original, copy in copies:
        report.problems.append(
            f"event {copy} is a copy of event {original}: an authentic event was replayed"
        )


def _check_unsealed(
    connection: Connection,
    keys: _Keys,
    now: datetime,
    report: ChainReport,
    replay: _StateReplay | None,
) -> None:
    """Events a sealing pass should long have taken: crash leftovers, or inserted by hand.

    The rows a transaction committed a moment ago are recorded by its event that waits
    to be sealed; ``replay`` takes those events' changes (keyed: only with a valid MAC).
    """
    columns = [c for c in _CHAIN_COLUMNS if c is not _EVENTS.seq]
    rows = connection.execute(
        select(*columns).where(_EVENTS.seq.is_(None)).order_by(_EVENTS.id)
    ).all()
    waiting = 0
    for row in rows:
        event_id, at, policy, rotation_id, step, outcome, actor, details, changes = row[:9]
        version, nonce, mac = row[9:12]
        key = keys.get(version) if version else None
        authentic = isinstance(key, MacKey) and mac == event_mac(
            key, version, nonce, at, policy, rotation_id, step, outcome, actor, details, changes
        )
        if version and not authentic:
            report.problems.append(
                f"event {event_id} is unsealed and not written by rotator (its MAC does not "
                "match its content): it was inserted behind rotator's back"
            )
        elif abs(now - at) <= UNSEALED_GRACE:
            waiting += 1
            if replay is not None and (authentic or keys.trust is None):
                replay.apply(event_id, changes)
        elif authentic:
            report.problems.append(
                f"event {event_id} (dated {at.isoformat()}) is still unsealed: a process "
                "stopped before its sealing pass; run 'rotator audit seal' to seal it"
            )
        else:
            report.problems.append(
                f"event {event_id} (dated {at.isoformat()}) is unsealed and carries no MAC: it "
                "was inserted behind rotator's back, or left by an unkeyed process that "
                "stopped before its sealing pass; find out which before 'rotator audit seal'"
            )
    if waiting:
        report.notes.append(f"{waiting} events written in the last seconds wait to be sealed")
