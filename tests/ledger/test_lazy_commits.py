"""A request's hold commits without waiting for the disk; everything else waits
(``serving.core.ledger.db.lazy_commit``). Checked where the commit happens: each
transaction's own setting as its commit runs, on SQLite (``PRAGMA synchronous``: 1 NORMAL,
2 FULL) and on PostgreSQL (``synchronous_commit``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, event, text

from serving.core.ledger import Ledger
from serving.core.ledger.db import create_ledger_engine, lazy_commit


def waits_for_disk(conn: Connection) -> bool:
    """Whether ``conn``'s open transaction will wait for the disk when it commits."""
    if conn.dialect.name == "sqlite":
        return conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
    return conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "on"


@contextmanager
def commits(engine: Engine) -> Iterator[list[bool]]:
    """Whether each commit on ``engine`` (and engines made from it) waited for the disk."""
    seen: list[bool] = []

    def on_commit(conn: Connection) -> None:
        seen.append(waits_for_disk(conn))

    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", on_commit)


def test_holds_commit_lazily_and_money_that_moves_waits_for_the_disk(ledger: Ledger):
    tenant = ledger.create_tenant("lazy holds").id
    with commits(ledger.engine) as seen:
        ledger.grant(tenant, 10)
        assert seen == [True]
        held = ledger.reserve(tenant, 4, "req_1")
        assert seen[1:] == [False]
        assert ledger.renew(held)
        assert seen[2:] == [False]
        ledger.settle(held, 1, 3)  # what answers the client: durable, and the hold with it
        assert seen[3:] == [True]
        other = ledger.reserve(tenant, 2, "req_2")
        ledger.release(other)  # a failed request's release: durable
        assert seen[4:] == [False, True]
    # Seen by a reader at once, as any commit: the settled and the released add up.
    balance = ledger.balance(tenant)
    assert (balance.available, balance.held) == (7, 0)


def test_a_pooled_connection_waits_for_the_disk_again_after_a_lazy_commit(db_url: str):
    engine = create_ledger_engine(db_url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE lazy_t (x INTEGER)"))
        with commits(engine) as seen:
            for lazy in (True, False, True, True, False):
                with (lazy_commit(engine) if lazy else engine).begin() as conn:
                    conn.execute(text("INSERT INTO lazy_t VALUES (1)"))
        assert seen == [False, True, False, False, True]
        with engine.connect() as conn:  # one connection all along: the pool's only one
            assert conn.execute(text("SELECT count(*) FROM lazy_t")).scalar_one() == 5
            conn.execute(text("DROP TABLE lazy_t"))
            conn.commit()
    finally:
        engine.dispose()
