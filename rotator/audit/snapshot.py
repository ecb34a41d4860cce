"""A read-only look at schedule state through the bare database driver.

A CronJob starts ``rotator rotate due`` every few minutes and mostly finds
nothing to do. Importing SQLAlchemy would cost more than the rest of such a
run, so this reads what the decision needs (the schema revision, the policies
with an unfinished rotation, each policy's state, the pauses) with psycopg or sqlite3
directly. Whatever it cannot read plainly (another driver, a missing file, an
unreachable server) gives None, and the caller takes the full path, which
reports the problem properly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rotator.audit.records import Pause, PolicyState
from rotator.secret import Secret
from rotator.vocabulary import TERMINAL_STATES

_POLICY_STATES = (
    "SELECT policy, current_key_id, vault_version, last_rotated_at, last_rotation_id, "
    "adopted_at, attention FROM policy_state"
)
_PAUSES = "SELECT policy, reason, paused_by, paused_at, until FROM policy_pauses"
_TERMINAL = tuple(sorted(TERMINAL_STATES))
_UNFINISHED = "SELECT DISTINCT policy FROM rotations WHERE state NOT IN ({})"
# The same query in each driver's parameter style.
_UNFINISHED_SQLITE = _UNFINISHED.format(", ".join("?" for _ in _TERMINAL))
_UNFINISHED_POSTGRES = _UNFINISHED.format(", ".join("%s" for _ in _TERMINAL))
_POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg")


@dataclass(frozen=True)
class ScheduleSnapshot:
    """Committed schedule state, as one read saw it."""

    revision: str | None
    unfinished: frozenset[str]
    states: dict[str, PolicyState]
    pauses: dict[str, Pause] = field(default_factory=dict)


def read_snapshot(url: Secret) -> ScheduleSnapshot | None:
    """The schedule state in the database at ``url``, or None if it cannot be read plainly."""
    raw = url.reveal()
    scheme = raw.partition("://")[0]
    try:
        if scheme == "sqlite":
            return _read_sqlite(raw)
        if scheme in _POSTGRES_SCHEMES:
            return _read_postgres("postgresql" + raw[len(scheme) :])
    except (sqlite3.Error, OSError, ValueError):
        return None
    return None


def _read_sqlite(raw: str) -> ScheduleSnapshot | None:
    parts = urlsplit(raw)
    path = parts.path[1:]
    if parts.netloc or parts.query or not path or path == ":memory:" or not Path(path).exists():
        return None
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=5)) as connection:
        return _read(connection.execute, _UNFINISHED_SQLITE, _sqlite_time)


def _read_postgres(conninfo: str) -> ScheduleSnapshot | None:
    import psycopg

    try:
        with psycopg.connect(conninfo, connect_timeout=10) as connection:
            return _read(connection.execute, _UNFINISHED_POSTGRES, _postgres_time)
    except psycopg.Error:
        return None


def _read(
    execute: Callable[..., Iterable[Any]],
    unfinished_query: str,
    as_utc: Callable[[Any], datetime | None],
) -> ScheduleSnapshot | None:
    revisions = [row[0] for row in execute("SELECT version_num FROM alembic_version")]
    if len(revisions) != 1:
        return None
    unfinished = frozenset(row[0] for row in execute(unfinished_query, _TERMINAL))
    states = {}
    for row in execute(_POLICY_STATES):
        policy, key_id, version, rotated_at, rotation_id, adopted_at, attention = row
        states[policy] = PolicyState(
            policy, key_id, version, as_utc(rotated_at), rotation_id, as_utc(adopted_at), attention
        )
    pauses = {
        policy: Pause(policy, reason, by, _utc(as_utc(at)), as_utc(until))
        for policy, reason, by, at, until in execute(_PAUSES)
    }
    return ScheduleSnapshot(revisions[0], unfinished, states, pauses)


def _utc(value: datetime | None) -> datetime:
    assert value is not None  # a NOT NULL column
    return value


def _sqlite_time(value: str | None) -> datetime | None:
    # SQLAlchemy stores SQLite datetimes as naive UTC text.
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _postgres_time(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)
