"""One rotation per policy at a time, across processes and machines.

On PostgreSQL a session-level advisory lock is held by a dedicated connection
for the whole time a policy is worked on; if the process dies, the server
closes the connection and the lock is free again. The session can also end
while the holder is still busy (a failover, a pooler, an idle kill,
``pg_terminate_backend``): then another process may take the policy. So the
holder re-checks its ``Lease`` before every vendor and Vault call; a lock that
is gone is taken again if it is free, and otherwise the holder stops
(``LockLost``). The rotation row's fence (see ``AuditStore.claim_rotation``)
catches what happens between that check and the next database write.

A rotation step's database write goes on the lock's own session (``Lease.write``):
a statement that succeeds there shows the session, and so the lock, was alive, which
spares the next check its round trip when no call came between. A write that fails
there checks the lock at once.

On SQLite (one host) an exclusive ``flock`` on a file beside the database does
the same; it lasts as long as the process keeps the file open, so it cannot be
lost while held, and it only excludes processes on the same host.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from rotator.audit.driver import DriverStatements
from rotator.errors import AuditStoreError, LockLost
from rotator.log import get_logger

log = get_logger("rotator.lock")

T = TypeVar("T")

# Sent on the driver's connection, not through SQLAlchemy's statement machinery: it runs
# before every vendor and Vault call, and SQLAlchemy's execution context cost more than
# the query.
_HELD = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND pid = pg_backend_pid() AND classid = %(classid)s AND objid = %(objid)s "
    "AND objsubid = 1)"
)


# Sent on the driver's connection too, compiled once (see rotator/audit/driver.py).
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:k)")
_UNLOCK = text("SELECT pg_advisory_unlock(:k)")


def _lock_key(policy: str) -> int:
    digest = hashlib.sha256(f"rotator:policy:{policy}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def advisory_lock_ids(policy: str) -> tuple[int, int]:
    """``policy``'s lock as ``pg_locks`` shows it: (classid, objid), the key's two halves."""
    key = _lock_key(policy) & 0xFFFFFFFFFFFFFFFF
    return key >> 32, key & 0xFFFFFFFF


class Lease:
    """This process's hold on one policy's lock; false when the lock was not acquired."""

    def __init__(self, policy: str, *, acquired: bool) -> None:
        self.policy = policy
        self.acquired = acquired

    def __bool__(self) -> bool:
        return self.acquired

    def confirm(self) -> bool:
        """Raise ``LockLost`` unless the lock is still (or again) ours; True if taken again.

        Taken again means the lock was free for a while: the caller must re-claim its
        rotation's fence before acting, since another process may have worked meanwhile.
        """
        return False

    def write(self, write: Callable[[Connection | None], T], *, retaken: Callable[[], None]) -> T:
        """Run ``write``, given the connection to make its one statement on (None: any).

        Where the lock is a database session, it is that session, and a write that
        succeeds there counts as the next ``confirm``. If the write fails, the lock is
        checked: ``LockLost`` if it is gone; if it was taken again, ``retaken`` runs (to
        re-claim the rotation) and ``write`` is tried once more; if it was held all
        along, the failure stands.
        """
        return write(None)

    def read(self, read: Callable[[Connection | None], T]) -> T:
        """Run ``read`` (one statement) as ``write`` runs a write, before the rotation is
        claimed: a lock taken again meanwhile needs no re-claim."""
        return self.write(read, retaken=lambda: None)


class _PostgresLease(Lease):
    def __init__(self, policy: str, engine: Engine, driver: DriverStatements) -> None:
        super().__init__(policy, acquired=False)
        self._engine = engine
        self._driver = driver
        self._key = _lock_key(policy)
        self._ids = dict(zip(("classid", "objid"), advisory_lock_ids(policy), strict=True))
        self._connection: Connection | None = None
        #: A statement just succeeded on the lock's session: the next ``confirm`` is free.
        self._proven = False
        self.acquired = self._take()

    def _take(self) -> bool:
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            taken = bool(self._driver.rows(connection, _TRY_LOCK, {"k": self._key})[0][0])
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            return False
        self._connection = connection
        return True

    def confirm(self) -> bool:
        from psycopg import Error as DriverError  # this lease only exists on PostgreSQL

        if self._proven:
            self._proven = False
            return False
        assert self._connection is not None
        try:
            driver = self._connection.connection.dbapi_connection
            assert driver is not None
            row = driver.execute(_HELD, self._ids).fetchone()
            if row is not None and row[0]:
                return False
        except (SQLAlchemyError, DriverError):
            # The session is gone, and the lock with it (SQLAlchemy refuses a connection
            # whose statement failed with it as invalidated).
            pass
        self._drop()
        try:
            retaken = self._take()
        except DBAPIError as exc:
            raise self._lost(
                f"cannot reach the database to take it again ({type(exc).__name__})"
            ) from None
        if not retaken:
            raise self._lost("another process holds it now")
        log.warning("policy lock taken again", policy=self.policy)
        return True

    def write(self, write: Callable[[Connection | None], T], *, retaken: Callable[[], None]) -> T:
        self._proven = False
        session = self._connection
        if session is None or session.invalidated:
            # Invalidated, SQLAlchemy would reconnect it: a new session, without the lock.
            return write(None)
        try:
            result = write(session)
        except AuditStoreError:
            # The session may have ended (failover, pooler, idle kill), and the lock with it.
            if not self.confirm():
                raise
            retaken()
            result = write(self._connection)
        self._proven = True
        return result

    def _lost(self, why: str) -> LockLost:
        return LockLost(
            f"policy {self.policy}: this process lost its lock (its database session ended: "
            f"failover, pooler or idle kill) and {why}; it stopped before its next call"
        )

    def _drop(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.invalidate()
                connection.close()
            except SQLAlchemyError:
                pass

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._driver.rows(self._connection, _UNLOCK, {"k": self._key})
            self._connection.close()
        except DBAPIError:
            # The session already ended, and its lock with it.
            self._drop()
        self._connection = None


class PolicyLocks:
    """Non-blocking per-policy locks in the audit database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._driver = DriverStatements(engine.dialect)
        self._local = threading.Lock()
        self._held: set[str] = set()

    @contextmanager
    def hold(self, policy: str) -> Iterator[Lease]:
        """Yield a true ``Lease`` while this process holds ``policy``'s lock, false if not."""
        with self._local:
            if policy in self._held:
                acquired_here = False
            else:
                self._held.add(policy)
                acquired_here = True
        if not acquired_here:
            yield Lease(policy, acquired=False)
            return
        try:
            if self._engine.dialect.name == "postgresql":
                with self._postgres(policy) as lease:
                    yield lease
            else:
                with self._file(policy) as lease:
                    yield lease
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
    def _postgres(self, policy: str) -> Iterator[Lease]:
        lease = _PostgresLease(policy, self._engine, self._driver)
        try:
            yield lease
        finally:
            lease.release()

    @contextmanager
    def _file(self, policy: str) -> Iterator[Lease]:
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
                yield Lease(policy, acquired=False)
                return
            try:
                yield Lease(policy, acquired=True)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
