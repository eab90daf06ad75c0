"""A server killed mid-request (SIGKILL) leaves its reservation held no longer than one
lease: while the request ran, its lease was renewed (another process sweeping all the
while found nothing to release); after the kill nobody renews it, and the next server's
start releases it. On SQLite and PostgreSQL, with a real server process
(``tests/serving/app_server.py``: ``create_app`` over a ``LocalModelClient``). And a
request that stalls past its lease and finds its reservation swept charges nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import timedelta
from pathlib import Path

import app_server
import httpx
from secrets_for_tests import TEST_SECRET
from sqlalchemy import select

from serving.core.accounts import Accounts
from serving.core.credits.charging import reserve
from serving.core.ledger import Balance, Ledger
from serving.core.ledger.ledger import as_utc, now
from serving.core.ledger.schema import reservations
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app

LEASE_S = 1.5
LEASE = {"KILN_RESERVATION_LEASE_S": str(LEASE_S)}
# A generation that runs far longer than the test: tiny-sd15 at 256 px, 200 steps.
SLOW = {"model": "tiny-sd15", "prompt": "a slow kiln", "resolution": "256px", "steps": 200, "n": 2}
PRICE = 4  # 2 credits an image at 256 px


def open_reservation(ledger: Ledger, tenant_id: str):
    with ledger.engine.connect() as conn:
        return conn.execute(
            select(reservations).where(
                reservations.c.tenant_id == tenant_id, reservations.c.state == "open"
            )
        ).one_or_none()


def test_a_killed_servers_hold_is_released_after_the_lease_on_the_next_start(
    kiln_home: Path, catalog, db_url: str, tmp_path: Path
):
    ledger = Ledger(db_url)
    accounts = Accounts(ledger)
    tenant = accounts.create_tenant("studio")
    ledger.grant(tenant.id, 100)
    key = accounts.create_key(tenant.id).key
    log = tmp_path / "server.log"
    first, url = app_server.start(kiln_home, db_url, log, LEASE)
    try:

        def generate() -> None:
            with contextlib.suppress(httpx.HTTPError):  # never answered: its server dies
                httpx.post(
                    f"{url}/v1/generations",
                    json=SLOW,
                    headers={"authorization": f"Bearer {key}"},
                    timeout=120,
                )

        threading.Thread(target=generate, daemon=True).start()
        deadline = time.monotonic() + 60
        while (held := open_reservation(ledger, tenant.id)) is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        assert ledger.balance(tenant.id) == Balance(available=100 - PRICE, held=PRICE)
        # Alive, the request renews its lease: two leases on, another process's sweeps
        # have found nothing to release, and the lease ends later than it first did.
        deadline = time.monotonic() + 2 * LEASE_S
        while time.monotonic() < deadline:
            assert ledger.sweep_expired() == {}
            time.sleep(0.2)
        assert as_utc(open_reservation(ledger, tenant.id).expires) > as_utc(held.expires)
    finally:
        first.kill()  # SIGKILL: no release, no cleanup of any kind
        first.wait(timeout=30)
    left = open_reservation(ledger, tenant.id)
    assert left is not None and left.id == held.id  # the hold outlived its process
    wait_s = (as_utc(left.expires) - now()).total_seconds()
    time.sleep(max(0.0, wait_s) + 0.2)  # past the lease: nobody renewed it
    second, _ = app_server.start(kiln_home, db_url, log, LEASE)
    try:
        assert ledger.balance(tenant.id) == Balance(available=100, held=0)
        [release] = [e for e in ledger.entries(tenant.id) if e.kind == "release"]
        assert (release.reservation_id, release.amount) == (held.id, PRICE)
        assert open_reservation(ledger, tenant.id) is None
        assert "expired unsettled" in log.read_text()
    finally:
        second.terminate()
        second.wait(timeout=30)
        ledger.close()


def test_a_request_that_outlived_its_lease_delivers_free_and_is_refunded_once(db_url: str):
    async def stalled_request(ledger: Ledger, tenant_id: str) -> int:
        async with reserve(ledger, tenant_id, unit=2, n=3, reference="gen_stalled") as charge:
            # The process stalls longer than the lease (a frozen VM): another replica's
            # sweeper gives the credits back meanwhile.
            assert ledger.sweep_expired(at=now() + timedelta(hours=1)) != {}
            return await charge.settle(3)  # the images were made: nothing charged

    with Ledger(db_url) as ledger:
        tenant = ledger.create_tenant("studio")
        ledger.grant(tenant.id, 10)
        assert asyncio.run(stalled_request(ledger, tenant.id)) == 0
        assert ledger.balance(tenant.id) == Balance(available=10, held=0)
        kinds = [e.kind for e in reversed(ledger.entries(tenant.id))]
        assert kinds == ["grant", "reserve", "release"]  # one refund, by the sweeper


def test_the_balance_a_tenant_reads_has_its_expired_holds_released(
    tmp_path: Path, catalog, make_client
):
    settings = Settings(home=tmp_path, secret=TEST_SECRET, database=f"sqlite:///{tmp_path}/k.db")
    app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"))
    client = make_client(app, credits=10)
    ledger = app.state.kiln.ledger
    ledger.reserve(client.tenant_id, 6)  # a request whose process then died
    assert client.get("/v1/credits").json()["held"] == 6  # within its lease: still held
    with ledger.engine.begin() as conn:  # ...and one lease later
        conn.execute(reservations.update().values(expires=now() - timedelta(seconds=1)))
    credits = client.get("/v1/credits").json()
    assert (credits["balance"], credits["held"]) == (10, 0)
    assert (credits["entries"][0]["kind"], credits["entries"][0]["amount"]) == ("release", 6)
    assert ledger.sweep_expired() == {}  # released once
    ledger.close()
