"""How rotator connects to its audit database: the SQLAlchemy engine and its pool.

SQLite (local trials) gets WAL and a busy timeout so several processes can
share the file. PostgreSQL gets a pool sized for the workers, and a liveness
check on checkout only for connections that sat idle: a connection used a
moment ago is alive, and checking it anyway would cost a round trip on each of
the dozen checkouts a rotation makes. One idle longer may have been closed by a
database restart, a failover or a proxy's idle timeout; it is pinged first and
replaced if dead. A connection that dies between two close uses fails that one
statement, which the rotation protocol treats like any other failed step (its
state is already persisted; the step is retried), and SQLAlchemy then replaces
every connection older than the failure.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError

from rotator.audit.chain import canonical_json
from rotator.secret import Secret

#: Seconds a pooled PostgreSQL connection may sit unused before it is pinged on checkout.
PING_AFTER_IDLE = 1.0
_IDLE_SINCE = "rotator.idle_since"
#: libpq TCP keepalives (unless the URL sets its own): a policy lock's connection sits idle
#: through long vendor calls, and a peer that vanished (failover, a dropped NAT entry) is
#: noticed within about a minute instead of the operating system's two hours.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def make_engine(url: Secret, *, workers: int = 4) -> Engine:
    """A SQLAlchemy engine for ``url``.

    Each worker holds one connection for its policy lock and needs another for its
    transactions, so the PostgreSQL pool is sized for two per worker.
    """
    raw = url.reveal()
    if raw.startswith("sqlite"):
        return _sqlite_engine(raw)
    # LIFO hands out the connection used last, so busy workers keep reusing warm connections
    # (no ping) and only the spare ones age past PING_AFTER_IDLE.
    given = make_url(raw).query
    engine = create_engine(
        raw,
        pool_size=2 * workers + 2,
        max_overflow=2 * workers + 2,
        pool_use_lifo=True,
        json_serializer=canonical_json,
        connect_args={k: v for k, v in KEEPALIVES.items() if k not in given},
        # No column is hstore: skip the type lookup each process's first connection makes.
        use_native_hstore=False,
    )
    _ping_when_idle(engine)
    return engine


def _sqlite_engine(raw: str) -> Engine:
    engine = create_engine(
        raw,
        connect_args={"timeout": 30, "check_same_thread": False},
        json_serializer=canonical_json,
    )
    _create_private(engine.url.database)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


def _create_private(database: str | None) -> None:
    """Create a missing SQLite file readable by its owner only (its -wal and -shm follow it).

    It holds every rotation's history; SQLite itself would create it 0644 under the
    usual umask.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _stamp(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and checks out another.
            raise DisconnectionError("pooled audit database connection is gone") from exc
