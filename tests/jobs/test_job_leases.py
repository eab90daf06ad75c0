"""A job's credits stay held while the job is alive, on SQLite and PostgreSQL: the runner
renews the lease of a queued job's reservation and the worker a running one's, so a
sweeper (another replica's, every few hundred milliseconds here) never releases them;
once the runner is gone, the next one's start releases what it left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from serving.core.jobs import JobKind, Jobs, register_kind
from serving.core.jobs.runner import JOB_KINDS, JobContext, JobRunner
from serving.core.ledger import Balance, Ledger
from serving.core.ledger.ledger import now
from serving.core.settings import Settings
from weights.catalog import load_catalog

LEASE_S = 1.0


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Ledger(db_url, reservation_lease_s=LEASE_S) as opened:
        yield opened


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """A job kind that holds its worker until the test opens the gate, then charges."""
    opened = threading.Event()

    def held(ctx: JobContext) -> dict:
        if not opened.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        return {"charged": ctx.capture(ctx.job.price)}

    saved = dict(JOB_KINDS)
    register_kind("held", JobKind(held))
    yield opened
    opened.set()
    JOB_KINDS.clear()
    JOB_KINDS.update(saved)


def test_queued_and_running_jobs_keep_their_credits_held(
    ledger: Ledger, tmp_path: Path, db_url: str, gate: threading.Event
):
    settings = Settings(home=tmp_path, database=db_url, reservation_lease_s=LEASE_S)
    runner = JobRunner(settings, ledger, load_catalog(settings.home))
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 100)
    made = []
    for price in (30, 20):  # the second waits behind the first: one worker thread
        reservation = ledger.reserve(tenant.id, price)
        made.append(jobs.create(tenant.id, "held", {}, price=price, reservation_id=reservation.id))
        runner.submit(made[-1])
    running, queued = made
    try:
        deadline = time.monotonic() + 3 * LEASE_S
        while time.monotonic() < deadline:  # three leases, swept all along
            assert ledger.sweep_expired() == {}
            time.sleep(0.2)
        assert [jobs.load(job.id).state for job in made] == ["running", "queued"]
        assert ledger.balance(tenant.id) == Balance(available=50, held=50)
    finally:
        gate.set()
        runner.wait(timeout=30)
        runner.close()
    assert [jobs.load(job.id).result for job in made] == [{"charged": 30}, {"charged": 20}]
    assert ledger.balance(tenant.id) == Balance(available=50, held=0)


def test_a_runners_start_releases_the_holds_of_jobs_that_died_with_their_process(
    ledger: Ledger, tmp_path: Path, db_url: str
):
    settings = Settings(home=tmp_path, database=db_url, reservation_lease_s=LEASE_S)
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 100)
    # A job submitted by a process that died: nobody renews its reservation.
    reserved_at = now()  # before the reservation: its lease runs to this + LEASE_S at least
    reservation = ledger.reserve(tenant.id, 40)
    jobs.create(tenant.id, "held", {}, price=40, reservation_id=reservation.id)
    # Half a lease after it was made it is held (timed from the reservation, not from this
    # line: on a slow database the lines above may take half a lease themselves).
    assert ledger.sweep_expired(at=reserved_at + timedelta(seconds=LEASE_S / 2)) == {}
    time.sleep(LEASE_S + 0.1)
    runner = JobRunner(settings, ledger, load_catalog(settings.home))  # the next start
    runner.close()
    assert ledger.balance(tenant.id) == Balance(available=100, held=0)
    [release] = [e for e in ledger.entries(tenant.id) if e.kind == "release"]
    assert (release.reservation_id, release.amount) == (reservation.id, 40)
