"""The per-tenant concurrency cap, counted in the database: every ingress process that
shares the database shares the cap. Each test runs on SQLite and PostgreSQL (``db_url``);
"processes" are separate ``Ledger`` objects on one URL, or real OS processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from serving.core.errors import KilnError
from serving.core.ledger import Ledger
from serving.core.limits import LEASE, ConcurrencyLimiter

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("slot_worker.py")


@pytest.fixture
def ledgers(db_url: str) -> Iterator[tuple[Ledger, Ledger]]:
    """Two ledgers on one database, as two ingress processes have."""
    with Ledger(db_url, pool_size=20) as one, Ledger(db_url, pool_size=20) as two:
        yield one, two


def test_two_processes_share_the_cap(ledgers):
    one, two = ledgers
    tenant = one.create_tenant("studio")
    other = one.create_tenant("other")
    a = ConcurrencyLimiter(2, one.engine)
    b = ConcurrencyLimiter(2, two.engine)
    first, second = a.acquire(tenant.id), b.acquire(tenant.id)
    assert first is not None and second is not None
    assert {first.slot, second.slot} == {0, 1}
    assert a.acquire(tenant.id) is None and b.acquire(tenant.id) is None
    assert a.in_use(tenant.id) == b.in_use(tenant.id) == 2
    assert b.acquire(other.id) is not None  # the cap is per tenant
    a.release(first)  # released in one process, free in the other
    again = b.acquire(tenant.id)
    assert again is not None and again.slot == first.slot
    assert a.acquire(tenant.id) is None


def test_release_frees_only_the_holders_own_slot(ledgers):
    one, two = ledgers
    tenant = one.create_tenant("studio")
    a = ConcurrencyLimiter(1, one.engine)
    b = ConcurrencyLimiter(1, two.engine)
    held = a.acquire(tenant.id)
    assert held is not None and a.in_use(tenant.id) == 1
    a.release(held)
    assert a.in_use(tenant.id) == 0
    mine = b.acquire(tenant.id)
    assert mine is not None and mine.slot == held.slot
    a.release(held)  # a second release of an old holding frees nobody else's slot
    assert b.in_use(tenant.id) == 1 and a.acquire(tenant.id) is None


def test_an_expired_lease_is_taken_over(ledgers):
    one, two = ledgers
    tenant = one.create_tenant("studio")
    crashed = ConcurrencyLimiter(1, one.engine)
    b = ConcurrencyLimiter(1, two.engine)
    t0 = datetime.now(UTC) - LEASE - timedelta(seconds=5)
    stale = crashed.acquire(tenant.id, now=t0)  # its process died without releasing
    assert stale is not None
    assert b.acquire(tenant.id, now=t0 + LEASE - timedelta(seconds=1)) is None  # still held
    assert b.in_use(tenant.id) == 0  # by now its lease is over
    taken = b.acquire(tenant.id)
    assert taken is not None and taken.slot == stale.slot and taken.holder != stale.holder
    assert not crashed.renew(stale)  # the old holder cannot renew it back ...
    crashed.release(stale)  # ... nor free it
    assert b.in_use(tenant.id) == 1 and b.acquire(tenant.id) is None


def test_renewal_keeps_a_slot_past_its_first_lease(ledgers):
    one, two = ledgers
    tenant = one.create_tenant("studio")
    a = ConcurrencyLimiter(1, one.engine)
    b = ConcurrencyLimiter(1, two.engine)
    t0 = datetime.now(UTC)
    held = a.acquire(tenant.id, now=t0)
    assert held is not None
    assert a.renew(held, now=t0 + LEASE - timedelta(seconds=30))
    assert b.acquire(tenant.id, now=t0 + LEASE + timedelta(seconds=1)) is None
    assert b.acquire(tenant.id, now=t0 + 2 * LEASE) is not None


def test_a_held_slot_is_renewed_while_its_request_runs(ledgers):
    one, two = ledgers
    tenant = one.create_tenant("studio")
    a = ConcurrencyLimiter(1, one.engine, lease=timedelta(seconds=1), renew_every_s=0.1)
    b = ConcurrencyLimiter(1, two.engine)

    async def long_request() -> int | None:
        async with a.slot(tenant.id):
            await asyncio.sleep(2.0)  # twice the lease
            return await asyncio.to_thread(b.acquire, tenant.id)

    assert asyncio.run(long_request()) is None  # still held: renewed, not expired
    assert a.in_use(tenant.id) == 0  # and released at the end


def test_many_tasks_in_two_processes_never_exceed_the_cap(ledgers):
    one, two = ledgers
    tenant = one.create_tenant("studio")
    cap = 3
    limiters = [ConcurrencyLimiter(cap, one.engine), ConcurrencyLimiter(cap, two.engine)]
    inside = 0
    most = 0
    outcomes: list[str] = []

    async def request(i: int) -> None:
        nonlocal inside, most
        try:
            async with limiters[i % 2].slot(tenant.id):
                inside += 1
                most = max(most, inside)
                assert await asyncio.to_thread(limiters[0].in_use, tenant.id) <= cap
                await asyncio.sleep(0.02)
                inside -= 1
            outcomes.append("ran")
        except KilnError as exc:
            assert exc.status == 429 and exc.code == "tenant_concurrency_limit"
            assert exc.headers == {"retry-after": "1"}
            outcomes.append("429")

    async def burst() -> None:
        for _ in range(3):
            await asyncio.gather(*(request(i) for i in range(24)))

    asyncio.run(burst())
    assert 1 <= most <= cap
    assert outcomes.count("ran") >= cap and len(outcomes) == 72
    assert limiters[0].in_use(tenant.id) == 0


def test_threads_racing_for_slots_take_exactly_the_cap(ledgers):
    one, two = ledgers
    tenant = one.create_tenant("studio")
    cap = 3
    limiters = [ConcurrencyLimiter(cap, one.engine), ConcurrencyLimiter(cap, two.engine)]
    start = threading.Barrier(16)
    held = []
    lock = threading.Lock()

    def take(i: int) -> None:
        start.wait()
        slot = limiters[i % 2].acquire(tenant.id)  # held, never released: pure contention
        with lock:
            held.append(slot)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    taken = [slot for slot in held if slot is not None]
    assert len(held) == 16 and sorted(slot.slot for slot in taken) == list(range(cap))


def test_os_processes_share_the_cap(db_url: str):
    with Ledger(db_url) as ledger:
        tenant = ledger.create_tenant("studio")
    cap, attempts = 3, 8
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), db_url, tenant.id, str(cap), str(attempts)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        slots = [json.loads(worker.stdout.readline()) for worker in workers]
        assert sorted(slots[0] + slots[1]) == list(range(cap))
        with Ledger(db_url) as ledger:
            limiter = ConcurrencyLimiter(cap, ledger.engine)
            assert limiter.in_use(tenant.id) == cap and limiter.acquire(tenant.id) is None
            for worker in workers:
                worker.stdin.write("release\n")
                worker.stdin.flush()
            assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
            assert limiter.in_use(tenant.id) == 0 and limiter.acquire(tenant.id) is not None
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()


def test_a_cancelled_request_gives_its_slot_back(ledgers):
    one, _ = ledgers
    tenant = one.create_tenant("studio")
    limiter = ConcurrencyLimiter(1, one.engine)

    async def main() -> None:
        inside = asyncio.Event()

        async def request() -> None:
            async with limiter.slot(tenant.id):
                inside.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(request())
        await inside.wait()
        assert await asyncio.to_thread(limiter.in_use, tenant.id) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert limiter.in_use(tenant.id) == 0


def test_no_cap_never_touches_the_database(ledgers):
    one, _ = ledgers
    tenant = one.create_tenant("studio")
    statements: list[str] = []
    event.listen(one.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    limiter = ConcurrencyLimiter(None, one.engine)

    async def many() -> None:
        async def request() -> None:
            async with limiter.slot(tenant.id):
                await asyncio.sleep(0)

        await asyncio.gather(*(request() for _ in range(50)))

    asyncio.run(many())
    assert statements == []
