"""The hottest audit statements, compiled once and sent on the driver's own connection.

A rotation makes nine step writes (rotator/audit/rotation_state.py) and takes and
releases its policy's lock (rotator/engine/lock.py). Through ``Connection.execute``
each paid SQLAlchemy's per-execution work (the statement's cache key, an execution
context, a result object) on top of the driver's, which nearly doubled its CPU (165
against 89 microseconds a step write). Here a statement is still built with SQLAlchemy
Core, compiled once per dialect, and its parameters go through the same bind
processors; only the execution is the driver's. A failure goes through SQLAlchemy's
own handling, so it is wrapped, and a lost connection invalidated (with the pool's
older connections), just as it would be by ``Connection.execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import closing
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement


class _Compiled:
    """One statement's SQL for one dialect, and how to turn its parameters into bind values."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        # Named parameters only: a positional dialect would need them put in order.
        assert not compiled.positional
        assert not compiled.escaped_bind_names
        self.compiled = compiled
        self.sql = compiled.string
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self.processors[name] = process

    def bind_values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(self.compiled.construct_params(dict(params)))
        for name, process in self.processors.items():
            values[name] = process(values[name])
        return values


class DriverStatements:
    """Runs SQLAlchemy statements on a connection's driver connection, each compiled once."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._compiled: dict[ClauseElement, _Compiled] = {}

    def rows(
        self, connection: Connection, statement: ClauseElement, params: Mapping[str, Any]
    ) -> list[Any]:
        """Run ``statement`` with ``params`` on ``connection`` (autocommit); the rows it returns."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled.setdefault(statement, _Compiled(statement, self._dialect))
        values = compiled.bind_values(params)
        driver = connection.connection.dbapi_connection
        # Outside a transaction: on a connection in one, the statement would join it unseen.
        assert driver is not None
        assert driver.autocommit
        try:
            with closing(driver.cursor()) as cursor:
                cursor.execute(compiled.sql, values)
                return list(cursor.fetchall())
        except self._dialect.loaded_dbapi.Error as exc:
            # SQLAlchemy's own handling: wrapped as Connection.execute would raise it, and a
            # lost connection invalidated along with the pool's older ones. It always raises.
            connection._handle_dbapi_exception(exc, compiled.sql, values, None, None)
            raise
