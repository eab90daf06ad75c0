"""The paid path's statements, run on the database driver's own cursor.

Every image request reserves its credits in one transaction and settles them, with its
asset rows, in another: 3 and 5 statements for one image. Through
``Connection.execute`` each statement also pays for SQLAlchemy's execution machinery (the
compiled cache's lookup, an execution context, the result's wrapping, the events): on
SQLite, both transactions take 1.61 ms back to back and 3.48 ms after a 100 ms wait (as
the ingress wakes from waiting on the model, its caches cold) against 1.13 and 2.58 ms on
the driver's cursor inside the same ``engine.begin()``; on PostgreSQL, whose round trips
weigh more, 1.14x (``benchmarks/ledger_cost.py``).

A ``DriverStatement`` is a Core statement, compiled once per dialect (and, for an INSERT,
per set of columns) by SQLAlchemy's own compiler: the SQL is still written once, as Core,
for SQLite and PostgreSQL alike, with SQLAlchemy's bind processors (SQLite's datetime
text). It runs inside the caller's SQLAlchemy transaction (``engine.begin()``: the same
pool, BEGIN IMMEDIATE and commit) on that connection's DBAPI connection, and a driver's
error is raised as SQLAlchemy raises it (``IntegrityError``, ``OperationalError``; a lost
connection invalidated). It answers the driver's cursor: ``rowcount``, and the rows of a
RETURNING as plain tuples, unprocessed, so it is only for statements whose answers are
text and integers (an INSERT's generated key, a reservation's tenant and amounts).

    _CLOSE = DriverStatement(update(reservations).where(...).returning(...))
    row = _CLOSE.execute(conn, {"b_id": reservation_id}).fetchone()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    """A statement's SQL in one dialect and its parameters in the order the driver takes
    them (positional paramstyles) or by name: each one's name and bind processor, and
    the values SQLAlchemy bound in the statement itself (a literal ``'open'``), already
    processed."""

    sql: str
    positional: bool
    binds: tuple[tuple[str, Processor], ...]
    fixed: Mapping[str, Any]

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = []
        for name, process in self.binds:
            if name in params:
                value = params[name]
                values.append(value if process is None or value is None else process(value))
            else:
                values.append(self.fixed[name])
        if self.positional:
            return tuple(values)
        return {name: value for (name, _), value in zip(self.binds, values, strict=True)}


class DriverStatement:
    """``statement`` (a Core INSERT, UPDATE or DELETE; see the module docstring) run on
    the driver's cursor of the caller's connection."""

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Run with ``params`` (bound names, or an INSERT's columns); the DBAPI cursor."""
        compiled = self._compiled_for(conn.dialect, params)
        return self._run(conn, compiled, compiled.arguments(params), many=False)

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once for each of ``rows`` (the same keys in each) in one driver call."""
        if not rows:
            return
        compiled = self._compiled_for(conn.dialect, rows[0])
        self._run(conn, compiled, [compiled.arguments(row) for row in rows], many=True)

    def _compiled_for(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        # An INSERT's columns are its parameters' keys; other statements name theirs.
        columns = tuple(params) if self.statement.is_insert else ()
        key = (dialect.name, columns)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _compile(self.statement, dialect, columns)
        return compiled

    @staticmethod
    def _run(conn: Connection, compiled: _Compiled, arguments: Any, *, many: bool) -> Any:
        dbapi_connection = conn.connection.dbapi_connection
        cursor = dbapi_connection.cursor()
        try:
            if many:
                cursor.executemany(compiled.sql, arguments)
            else:
                cursor.execute(compiled.sql, arguments)
        except conn.dialect.loaded_dbapi.Error as exc:
            lost = conn.dialect.is_disconnect(exc, dbapi_connection, cursor)
            cursor.close()
            if lost:
                conn.invalidate(exc)
            raise DBAPIError.instance(
                compiled.sql,
                arguments,
                exc,
                conn.dialect.loaded_dbapi.Error,
                connection_invalidated=lost,
                dialect=conn.dialect,
                ismulti=many,
            ) from exc
        return cursor


def _compile(statement: UpdateBase, dialect: Dialect, columns: tuple[str, ...]) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=list(columns) or None)
    processors: dict[str, Processor] = {}
    fixed: dict[str, Any] = {}
    for bind, name in compiled.bind_names.items():
        process = processors[name] = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if not bind.required:
            value = bind.effective_value
            fixed[name] = value if process is None or value is None else process(value)
    # A positional driver takes a name once for each place it appears; a named one once.
    names = (compiled.positiontup or ()) if compiled.positional else processors
    binds = tuple((name, processors[name]) for name in names)
    return _Compiled(compiled.string, compiled.positional, binds, fixed)
