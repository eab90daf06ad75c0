"""SQLite writers of one process queue on its lock for the file (``serving.core.ledger.db``):
held exactly while a write transaction is open, shared by every engine on the file, given
back on commit, rollback, a failed BEGIN and close; readers never take it; a second
writer starts once the first has committed, and another process still queues on SQLite's
own lock."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import text

from serving.core.ledger.db import QueuedWriterConnection, create_ledger_engine, read_only


@pytest.fixture
def url(tmp_path) -> str:  # noqa: ANN001
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'kiln.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    engine.dispose()
    return f"sqlite:///{tmp_path / 'kiln.db'}"


def write_lock(engine) -> threading.Lock:  # noqa: ANN001
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert isinstance(driver, QueuedWriterConnection)
        return driver.write_lock


def test_the_lock_is_held_exactly_while_a_write_transaction_is_open(url: str):
    engine, other = create_ledger_engine(url), create_ledger_engine(url)
    lock = write_lock(engine)
    assert write_lock(other) is lock  # every engine of this process on the file
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        assert lock.locked()
    assert not lock.locked()
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        assert lock.locked()
        raise RuntimeError("rolled back")
    assert not lock.locked()
    with read_only(engine).begin() as conn:  # readers take no lock
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
        assert not lock.locked()
    # A connection closed mid-transaction gives it back too.
    conn = engine.connect()
    conn.begin()
    assert lock.locked()
    conn.connection.driver_connection.close()
    assert not lock.locked()
    conn.invalidate()


def test_a_failed_begin_gives_the_lock_back(url: str, tmp_path):  # noqa: ANN001
    engine = create_ledger_engine(url)
    lock = write_lock(engine)
    outsider = sqlite3.connect(tmp_path / "kiln.db", isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")  # another process is mid-write...
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        driver.execute("PRAGMA busy_timeout = 50")  # ...for longer than this one waits
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            driver.begin_write()
    assert not lock.locked()
    outsider.execute("ROLLBACK")
    outsider.close()


def test_a_second_writer_starts_once_the_first_commits(url: str):
    engine = create_ledger_engine(url)
    entered = threading.Event()

    def second() -> None:
        with engine.begin() as conn:
            entered.set()
            conn.execute(text("INSERT INTO t VALUES (2)"))

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        writer = threading.Thread(target=second)
        writer.start()
        assert not entered.wait(0.3)  # queued on the lock while the first is open
    assert entered.wait(10)
    writer.join()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t ORDER BY rowid")).scalars().all() == [1, 2]


def test_holds_commit_without_a_flush_and_all_else_durably(tmp_path):  # noqa: ANN001
    """A reservation, its renewal and its release, and a concurrency slot's writes commit at
    ``synchronous = NORMAL`` (not flushed: they die with the process anyway); grants and
    settlements at FULL, also on the same pooled connection right after a hold."""
    from datetime import timedelta

    from sqlalchemy import event

    from serving.core.ledger import Ledger
    from serving.core.limits import ConcurrencyLimiter

    levels: list[tuple[str, int]] = []
    step = ["setup"]

    def at_commit(conn) -> None:  # noqa: ANN001 (before the driver's commit)
        driver = conn.connection.driver_connection
        levels.append((step[0], driver.execute("PRAGMA synchronous").fetchone()[0]))

    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}", pool_size=1) as ledger:
        event.listen(ledger.engine, "commit", at_commit)
        tenant = ledger.create_tenant("studio").id

        def run(name: str, call) -> object:  # noqa: ANN001
            step[0] = name
            return call()

        run("grant", lambda: ledger.grant(tenant, 10))
        reservation = run("reserve", lambda: ledger.reserve(tenant, 2, "gen_1"))
        run("renew", lambda: ledger.renew(reservation))
        run("settle", lambda: ledger.settle(reservation, 1, 1))
        second = run("reserve", lambda: ledger.reserve(tenant, 2, "gen_2"))
        run("release", lambda: ledger.release(second))
        run("grant", lambda: ledger.grant(tenant, 1))
        slots = ConcurrencyLimiter(1, ledger.engine, lease=timedelta(minutes=5))
        held = run("slot", lambda: slots.acquire(tenant))
        run("slot", lambda: slots.renew(held))
        run("slot", lambda: slots.release(held))
        run("grant", lambda: ledger.grant(tenant, 1))

    normal, full = 1, 2
    by_step: dict[str, set[int]] = {}
    for name, level in levels:
        by_step.setdefault(name, set()).add(level)
    assert by_step == {
        "setup": {full},
        "grant": {full},
        "reserve": {normal},
        "renew": {normal},
        "settle": {full},
        "release": {normal},
        "slot": {normal},
    }
    assert ledger.balance(tenant).available == 11  # 10, 1 captured, then 1 + 1 granted
