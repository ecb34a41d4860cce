"""One rotation per policy at a time, across processes and machines.

On PostgreSQL a session-level advisory lock is held by a dedicated connection
for the whole time a policy is worked on; if the process dies, the server
closes the connection and the lock is free again. On SQLite (one machine), an
exclusive ``flock`` on a file beside the database does the same.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text


def _lock_key(policy: str) -> int:
    digest = hashlib.sha256(f"rotator:policy:{policy}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PolicyLocks:
    """Non-blocking per-policy locks in the audit database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.Lock()
        self._held: set[str] = set()

    @contextmanager
    def hold(self, policy: str) -> Iterator[bool]:
        """Yield True while this process holds ``policy``'s lock, False if someone else does."""
        with self._local:
            if policy in self._held:
                acquired_here = False
            else:
                self._held.add(policy)
                acquired_here = True
        if not acquired_here:
            yield False
            return
        try:
            if self._engine.dialect.name == "postgresql":
                with self._postgres(policy) as acquired:
                    yield acquired
            else:
                with self._file(policy) as acquired:
                    yield acquired
        finally:
            with self._local:
                self._held.discard(policy)

    def held_elsewhere(self, policy: str) -> bool:
        """True while another process (or another thread here) works on ``policy``.

        On PostgreSQL this only reads ``pg_locks``; on SQLite the file lock is tried and
        released at once, as a lock file cannot be inspected without trying it.
        """
        with self._local:
            if policy in self._held:
                return True
        if self._engine.dialect.name == "postgresql":
            unsigned = _lock_key(policy) & 0xFFFFFFFFFFFFFFFF
            with self._engine.connect() as conn:
                return bool(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND classid = :hi AND objid = :lo AND objsubid = 1 AND granted "
                            "AND database = (SELECT oid FROM pg_database "
                            "WHERE datname = current_database())"
                        ),
                        {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF},
                    ).scalar()
                )
        with self._file(policy) as acquired:
            return not acquired

    @contextmanager
    def _postgres(self, policy: str) -> Iterator[bool]:
        key = _lock_key(policy)
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            acquired = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            )
            try:
                yield acquired
            finally:
                if acquired:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})

    @contextmanager
    def _file(self, policy: str) -> Iterator[bool]:
        database = self._engine.url.database
        base = Path(database) if database and database != ":memory:" else Path("rotator-memory")
        directory = base.with_name(base.name + ".locks")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / f"{_lock_key(policy) & 0xFFFFFFFFFFFFFFFF:016x}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
