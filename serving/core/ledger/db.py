"""Engines for the ledger's database, and the migrations that shape it.

SQLite (the embedded default) gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for every
transaction: writers from many processes then queue on the database lock instead of
failing with "database is locked" half-way through. Writers of one process queue first
on a lock of that process (one per database file), taken before ``BEGIN IMMEDIATE`` and
given back when the transaction ends: the next one starts the moment the last commits,
where SQLite's busy handler would poll with growing sleeps (1, 2, 5, 10, ... ms) and
wake late, up to twice the wait, when many requests of a burst settle at once
(``benchmarks/ledger_cost.py --writers``). Other processes still queue on SQLite's lock.
Read-only work goes through ``read_only(engine)``, whose transactions begin DEFERRED
(plain ``BEGIN``): under WAL a reader takes no lock and sees the last commit while a
writer works, so status polls and progress streams never queue behind writers, nor
writers behind them.

Commits are durable (``synchronous = FULL``: the WAL is flushed to the disk before the
commit returns) except those of ``transient(engine)``: holds that only mean something
while the process that took them lives (a request's reservation, its lease renewals and
its release without a capture; a concurrency slot). They commit at ``synchronous =
NORMAL``: written to the WAL, seen at once by every connection and process, surviving a
crash of the process, but not flushed. Only a power loss or an OS crash can lose them, and
that ends every request that held them too; a later durable commit (a settlement, a grant)
flushes the WAL with every frame before its own, so a capture is never on disk without
the reservation it captures from. One flush a request saved: 0.3 ms on this project's
CI disk, several ms on a consumer NVMe without power-loss protection
(``benchmarks/ledger_cost.py``).

PostgreSQL (``postgresql+psycopg://``) runs at READ COMMITTED, where the ledger's
conditional UPDATEs re-check their condition against the committed row, which is all the
no-double-spend guarantee needs.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url

from weights.home import private_file

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# The execution option that marks an engine's transactions as read-only (``read_only``).
READ_ONLY_OPTION = "kiln_read_only"
# The execution option whose transactions' commits need not survive a power loss
# (``transient``).
TRANSIENT_OPTION = "kiln_transient"
# Any constant: concurrent starts on PostgreSQL take turns migrating under this lock.
MIGRATION_LOCK_KEY = 0x6B696C6E  # "kiln"


# The write lock of each SQLite file this process writes, by its resolved path.
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


class QueuedWriterConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions take its file's lock of this process
    before SQLite's (``begin_write``) and give it back when they end (commit, rollback or
    close). A writer that cannot have the lock within the busy timeout (a connection of
    its own thread holds it) goes on to SQLite's lock, which then decides as it would
    without this one."""

    write_lock: threading.Lock  # set on the class ``_connection_class`` makes per file
    _holding = False
    # The connection's ``PRAGMA synchronous`` (``_sqlite_connect`` sets FULL).
    _synchronous = "FULL"

    def begin_write(self, synchronous: str = "FULL") -> None:
        """``BEGIN IMMEDIATE`` behind this process's lock of the file; its commit flushes
        the WAL when ``synchronous`` is FULL, not when it is NORMAL (``transient``)."""
        self._holding = self.write_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            if synchronous != self._synchronous:
                # Outside the transaction: a commit flushes as the connection's level says
                # when it commits. Set only when it changes.
                self.execute(f"PRAGMA synchronous = {synchronous}")
                self._synchronous = synchronous
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def commit(self) -> None:
        self._ending(super().commit)

    def rollback(self) -> None:
        self._ending(super().rollback)

    def close(self) -> None:
        self._ending(super().close)

    def _ending(self, end: Callable[[], None]) -> None:
        """``end`` the transaction (or the connection), then give the lock back."""
        try:
            end()
        finally:
            self._release()

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self.write_lock.release()


def _connection_class(path: Path) -> type[QueuedWriterConnection]:
    """The connection class of the SQLite file at ``path``: its write lock shared by every
    engine of this process on that file."""
    key = str(path.resolve())
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.setdefault(key, threading.Lock())
    return type("QueuedWriterConnection", (QueuedWriterConnection,), {"write_lock": lock})


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"


def create_ledger_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url``, configured for concurrent writers on either database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if parsed.database and parsed.database != ":memory:":
            # Created 0600 before SQLite opens it (SQLite would make it 0644), so the
            # -wal and -shm files, which SQLite gives the database's mode, are 0600 too.
            private_file(Path(parsed.database))
            connect_args["factory"] = _connection_class(Path(parsed.database))
        engine = create_engine(
            url, pool_size=pool_size, max_overflow=pool_size, connect_args=connect_args
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # Autocommit at the driver: pysqlite's own implicit BEGIN is deferred, which lets two
    # writers both read and then deadlock on upgrade; ``_sqlite_begin`` issues ours.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    # WAL is a property of the file, set once. Switching needs an exclusive lock, and
    # SQLite answers "locked" at once (no busy wait) when processes race to switch a new
    # file, so the first opening retries. synchronous is FULL: commits survive power loss
    # (but those of ``transient``, see the module doc).
    cursor.execute("PRAGMA synchronous = FULL")
    for attempt in range(100):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A reader's deferred BEGIN takes no lock until it reads, and a read under WAL never
    # takes the write lock; a writer's IMMEDIATE takes it up front (see the module doc).
    if connection.get_execution_options().get(READ_ONLY_OPTION):
        connection.exec_driver_sql("BEGIN")
        return
    driver = connection.connection.driver_connection
    if isinstance(driver, QueuedWriterConnection):
        transient_ = connection.get_execution_options().get(TRANSIENT_OPTION)
        driver.begin_write("NORMAL" if transient_ else "FULL")
    else:  # an in-memory database: one connection's, nobody to queue behind
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def read_only(engine: Engine) -> Engine:
    """``engine`` for read-only transactions: the same pool, but on SQLite each transaction
    begins DEFERRED, so it neither waits for nor blocks a writer (WAL). Never write through
    it: a write would have to upgrade a read lock, which SQLite may refuse as busy at
    once. On PostgreSQL reads take no locks anyway, and this changes nothing."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def transient(engine: Engine) -> Engine:
    """``engine`` for holds that die with the process (see the module doc): the same pool,
    but on a SQLite file each transaction commits without flushing the WAL. On PostgreSQL
    this changes nothing: there the database outlives a crash of its own that Kiln's
    processes survive, and a hold lost that way would fail the request holding it."""
    return engine.execution_options(**{TRANSIENT_OPTION: True})


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` with the packaged Alembic migrations.

    Safe to call at every start and from several processes at once: a migrated database
    is left as it is, and concurrent callers take turns (SQLite's write lock, or a
    PostgreSQL advisory lock held for the transaction).
    """
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    logger.info("ledger database (%s) at migration %s", engine.dialect.name, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Undo migrations down to ``revision`` (tests and operators' rollbacks)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def alembic_config() -> Config:
    """Alembic's configuration, built in code: no ``alembic.ini`` at run time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config
