"""The paid path's statements on the driver's cursor (``serving.core.ledger.driver``), on
SQLite and PostgreSQL: they write what SQLAlchemy's own execution writes (SQLite's
datetime text included), apply the values bound in the statement, answer RETURNING rows,
raise a driver's error as SQLAlchemy's, and a request's two transactions send nothing
through SQLAlchemy's execution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from pipelines.finishing import FinishedImage
from serving.core.assets.service import Assets, PreparedAsset
from serving.core.ledger import Ledger
from serving.core.ledger.driver import DriverStatement
from serving.core.ledger.ledger import _HOLD as HOLD
from serving.core.ledger.ledger import as_utc
from serving.core.ledger.schema import reservations

_res = reservations.c
INSERT_RESERVATION = DriverStatement(insert(reservations))
CLOSE = DriverStatement(
    update(reservations)
    .where(_res.id == bindparam("b_id"), _res.state == "open")
    .values(state="released")
    .returning(_res.tenant_id, _res.amount)
)


def reservation_row(tenant_id: str, reservation_id: str, at: datetime) -> dict[str, object]:
    return {
        "id": reservation_id,
        "tenant_id": tenant_id,
        "amount": 5,
        "captured": 0,
        "state": "open",
        "reference": "req_1",
        "created": at,
        "expires": at + timedelta(seconds=600),
    }


def test_rows_written_on_the_driver_read_back_as_sqlalchemy_wrote_them(ledger: Ledger):
    tenant = ledger.create_tenant("driver").id
    at = datetime(2026, 12, 5, 7, 30, 0, tzinfo=UTC)  # no microseconds: the format's edge
    with ledger.engine.begin() as conn:
        INSERT_RESERVATION.execute(conn, reservation_row(tenant, "res_driver", at))
        conn.execute(insert(reservations), [reservation_row(tenant, "res_alchemy", at)])
    with ledger.engine.begin() as conn:
        rows = {
            row.id: row
            for row in conn.execute(select(reservations).where(_res.tenant_id == tenant))
        }
        # Compared as the database compares them (text on SQLite): the sweeper's query.
        due = conn.execute(
            select(_res.id).where(_res.expires <= at + timedelta(seconds=600, microseconds=1))
        ).scalars()
        assert set(due) == {"res_driver", "res_alchemy"}
    driver, alchemy = rows["res_driver"], rows["res_alchemy"]
    assert as_utc(driver.created) == as_utc(alchemy.created) == at
    assert as_utc(driver.expires) == at + timedelta(seconds=600)
    assert (driver.amount, driver.state, driver.reference) == (5, "open", "req_1")


def test_a_statements_own_values_apply_and_returning_rows_come_back(ledger: Ledger):
    tenant = ledger.create_tenant("driver").id
    with ledger.engine.begin() as conn:
        INSERT_RESERVATION.execute(conn, reservation_row(tenant, "res_1", datetime.now(UTC)))
    with ledger.engine.begin() as conn:
        assert tuple(CLOSE.execute(conn, {"b_id": "res_1"}).fetchone()) == (tenant, 5)
    with ledger.engine.begin() as conn:
        # ``state == 'open'`` is the statement's own bound value: closed once, no row.
        assert CLOSE.execute(conn, {"b_id": "res_1"}).fetchone() is None
        state = conn.execute(select(_res.state).where(_res.id == "res_1")).scalar_one()
    assert state == "released"


def test_a_driver_error_is_sqlalchemys_and_rolls_the_transaction_back(ledger: Ledger):
    tenant = ledger.create_tenant("driver").id
    at = datetime.now(UTC)
    with pytest.raises(IntegrityError), ledger.engine.begin() as conn:
        INSERT_RESERVATION.execute(conn, reservation_row(tenant, "res_twice", at))
        INSERT_RESERVATION.execute(conn, reservation_row(tenant, "res_twice", at))
    with ledger.engine.begin() as conn:
        assert conn.execute(select(_res.id).where(_res.tenant_id == tenant)).all() == []
    # The pool's connection is fine afterwards.
    with ledger.engine.begin() as conn:
        INSERT_RESERVATION.execute(conn, reservation_row(tenant, "res_once", at))


def test_many_rows_in_one_driver_call(ledger: Ledger):
    tenant = ledger.create_tenant("driver").id
    at = datetime.now(UTC)
    with ledger.engine.begin() as conn:
        INSERT_RESERVATION.execute_many(
            conn, [reservation_row(tenant, f"res_{i}", at) for i in range(3)]
        )
        INSERT_RESERVATION.execute_many(conn, [])
    with ledger.engine.begin() as conn:
        ids = conn.execute(select(_res.id).where(_res.tenant_id == tenant)).scalars().all()
    assert sorted(ids) == ["res_0", "res_1", "res_2"]


def test_a_requests_reserve_and_settle_send_nothing_through_sqlalchemys_execution(
    ledger: Ledger,
):
    tenant = ledger.create_tenant("driver").id
    ledger.grant(tenant, 10)
    executed: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            executed.append(statement)

    row = {
        "id": "ast_1", "tenant_id": tenant, "kind": "base", "model": "tiny-sdxl",
        "prompt": "p", "seed": 1, "params": "{}", "width": 8, "height": 8,
        "media_type": "image/png", "bytes": 1, "sha256": "0" * 64,
        "preview_sha256": "0" * 64, "generation_id": "gen_1", "created": datetime.now(UTC),
    }  # fmt: skip
    delivered = [PreparedAsset(row, FinishedImage(b"", None, None))]
    event.listen(ledger.engine, "before_cursor_execute", record)
    try:
        reservation = ledger.reserve(tenant, 3, "req_1")
        captured, released = ledger.settle(
            reservation, 1, 2, also=lambda conn: Assets.insert(conn, delivered)
        )
    finally:
        event.remove(ledger.engine, "before_cursor_execute", record)
    assert executed == []
    assert (captured, released) == (2, 1)
    balance = ledger.balance(tenant)
    assert (balance.available, balance.held) == (8, 0)
    assert [e.kind for e in ledger.entries(tenant)] == [
        "release", "capture", "capture", "reserve", "grant"
    ]  # fmt: skip


def test_a_connection_lost_mid_statement_is_invalidated_and_the_next_request_works(
    postgres_url: str, postgres_schema
):
    """PostgreSQL ends the server process of a connection in the middle of a request's
    transaction: the statement on the driver raises SQLAlchemy's ``OperationalError``
    marked ``connection_invalidated``, the pool drops the connection, and the next
    reservation gets a live one."""
    with postgres_schema(postgres_url) as url, Ledger(url) as ledger:
        tenant = ledger.create_tenant("driver").id
        ledger.grant(tenant, 10)
        with pytest.raises(OperationalError) as lost, ledger.engine.begin() as conn:
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with ledger.engine.begin() as other:
                other.execute(text(f"SELECT pg_terminate_backend({backend})"))
            HOLD.execute(conn, {"b_tenant": tenant, "b_amount": 1})
        assert lost.value.connection_invalidated
        ledger.reserve(tenant, 2, "after")
        balance = ledger.balance(tenant)
    assert (balance.available, balance.held) == (8, 2)
