"""The job table and runner on SQLite and PostgreSQL: states move forward only, events are
numbered in order, cancellation works across processes, every end settles credits and
workspace, and another tenant's job does not exist."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serving.core.jobs import (
    JobCancelled,
    JobFailed,
    JobKind,
    Jobs,
    UnknownJob,
    UnknownJobKind,
    register_kind,
)
from serving.core.jobs.runner import JOB_KINDS, JobContext, JobRunner, execute_job, workspace_of
from serving.core.ledger import Ledger
from serving.core.settings import Settings
from weights.catalog import load_catalog

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Ledger(db_url) as opened:
        yield opened


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(home=tmp_path, database=db_url)


@pytest.fixture
def kinds() -> Iterator[None]:
    """Test kinds registered for one test (callables: the in-process backend runs them)."""

    def counts(ctx: JobContext) -> dict:
        (ctx.workspace / "partial.bin").write_bytes(b"x")
        total = ctx.job.params["steps"]
        for step in range(1, total + 1):
            ctx.report(step=step, total=total, loss=1.0 / step)
        ctx.capture(ctx.job.price)
        return {"counted": total}

    def fails(ctx: JobContext) -> dict:
        raise RuntimeError("the kiln is cold")

    def leaks(ctx: JobContext) -> dict:
        # What library errors carry: a path, a statement, a device message.
        raise RuntimeError(
            "(sqlite3.OperationalError) no such table: SELECT secret FROM "
            "/srv/kiln/home/kiln.db; CUDA error: an illegal memory access was encountered"
        )

    def refuses(ctx: JobContext) -> dict:
        raise JobFailed("every line of the batch failed", code="batch_failed")

    saved = dict(JOB_KINDS)
    register_kind("counts", JobKind(counts))
    register_kind("fails", JobKind(fails))
    register_kind("leaks", JobKind(leaks))
    register_kind("refuses", JobKind(refuses))
    register_kind("insolvent", JobKind(insolvent))
    yield
    JOB_KINDS.clear()
    JOB_KINDS.update(saved)


def test_a_job_moves_forward_and_numbers_its_events(ledger: Ledger):
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    job = jobs.create(tenant.id, "counts", {"steps": 2})
    assert (job.state, job.event_seq, job.progress, job.done) == ("queued", 1, {}, False)
    assert jobs.start(job.id) and not jobs.start(job.id)
    assert jobs.report(job.id, {"step": 1, "total": 2}) is False
    assert jobs.get(tenant.id, job.id).progress == {"step": 1, "total": 2}
    assert jobs.finish(job.id, "succeeded", result={"ok": True})
    assert not jobs.finish(job.id, "failed", error="late")  # finished stays finished
    done = jobs.get(tenant.id, job.id)
    assert (done.state, done.result, done.error) == ("succeeded", {"ok": True}, None)
    assert done.done
    events = jobs.events(job.id)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert [(e.type, e.data.get("state")) for e in events] == [
        ("state", "queued"),
        ("state", "running"),
        ("progress", None),
        ("state", "succeeded"),
    ]
    assert events[-1].data["result"] == {"ok": True}
    assert [e.seq for e in jobs.events(job.id, after=2)] == [3, 4]
    with pytest.raises(ValueError, match="finishes as one of"):
        jobs.finish(job.id, "running")


def test_another_tenants_job_is_unknown(ledger: Ledger):
    jobs = Jobs(ledger.engine)
    owner, other = ledger.create_tenant("a"), ledger.create_tenant("b")
    job = jobs.create(owner.id, "counts", {})
    with pytest.raises(UnknownJob):
        jobs.get(other.id, job.id)
    with pytest.raises(UnknownJob):
        jobs.request_cancel(other.id, job.id)
    assert jobs.get(owner.id, job.id).cancel_requested is False
    with pytest.raises(UnknownJob):
        jobs.get(owner.id, "job_missing")


def test_cancel_ends_a_queued_job_and_asks_a_running_one(ledger: Ledger):
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    queued = jobs.create(tenant.id, "counts", {})
    job, ended = jobs.request_cancel(tenant.id, queued.id)
    assert ended and job.state == "cancelled" and job.finished is not None
    assert not jobs.start(queued.id)  # the worker that arrives late does nothing

    running = jobs.create(tenant.id, "counts", {})
    jobs.start(running.id)
    job, ended = jobs.request_cancel(tenant.id, running.id)
    assert not ended and (job.state, job.cancel_requested) == ("running", True)
    assert jobs.report(running.id, {"step": 1}) is True
    jobs.finish(running.id, "cancelled")
    job, ended = jobs.request_cancel(tenant.id, running.id)  # finished: unchanged
    assert not ended and job.state == "cancelled"


def test_execute_job_succeeds_captures_and_cleans_up(ledger: Ledger, settings: Settings, kinds):
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 50)
    reservation = ledger.reserve(tenant.id, 30)
    job = jobs.create(tenant.id, "counts", {"steps": 3}, price=20, reservation_id=reservation.id)
    workspace_of(settings, job.id).mkdir(parents=True)
    heard = []
    catalog = load_catalog(settings.home)
    done = execute_job(settings, job.id, ledger=ledger, catalog=catalog, listener=heard.append)
    assert (done.state, done.result, done.progress["step"]) == ("succeeded", {"counted": 3}, 3)
    assert [p["step"] for p in heard] == [1, 2, 3]
    assert ledger.balance(tenant.id).available == 30 and ledger.balance(tenant.id).held == 0
    assert not workspace_of(settings, job.id).exists()


def test_a_failing_job_is_failed_and_charges_nothing(ledger: Ledger, settings: Settings, kinds):
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 50)
    reservation = ledger.reserve(tenant.id, 30)
    job = jobs.create(tenant.id, "fails", {}, price=30, reservation_id=reservation.id)
    done = execute_job(settings, job.id, ledger=ledger, catalog=load_catalog(settings.home))
    assert (done.state, done.error_code) == ("failed", "internal_error")
    assert ledger.balance(tenant.id).available == 50


def insolvent(ctx: JobContext) -> dict:
    ctx.ledger.reserve(ctx.job.tenant_id, 10_000)  # InsufficientCredits: a client's error
    return {}


def test_a_jobs_error_tells_the_client_no_internals(
    ledger: Ledger, settings: Settings, kinds, caplog
):
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    catalog = load_catalog(settings.home)
    job = jobs.create(tenant.id, "leaks", {})
    with caplog.at_level(logging.ERROR, logger="serving.core.jobs.runner"):
        done = execute_job(settings, job.id, ledger=ledger, catalog=catalog)
    assert (done.state, done.error_code) == ("failed", "internal_error")
    assert job.id in done.error  # what to quote to the operator
    for secret in ("sqlite3", "SELECT", "/srv/kiln", "kiln.db", "CUDA", "RuntimeError"):
        assert secret not in done.error
        assert secret not in json.dumps([e.data for e in jobs.events(job.id)])
    # The detail is in the log, under the job's id.
    logged = [r for r in caplog.records if job.id in r.getMessage()]
    assert logged and "/srv/kiln/home/kiln.db" in logged[0].exc_text
    # A job's own failure, and a client's error (402), are told as they are.
    refused = execute_job(
        settings, jobs.create(tenant.id, "refuses", {}).id, ledger=ledger, catalog=catalog
    )
    assert (refused.error, refused.error_code) == ("every line of the batch failed", "batch_failed")
    poor = execute_job(
        settings, jobs.create(tenant.id, "insolvent", {}).id, ledger=ledger, catalog=catalog
    )
    assert poor.error_code == "insufficient_credits" and "not enough credits" in poor.error


def test_unknown_kinds_are_refused_loudly(ledger: Ledger, settings: Settings):
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    job = jobs.create(tenant.id, "pottery", {})
    runner = JobRunner(settings, ledger, load_catalog(settings.home))
    with pytest.raises(UnknownJobKind, match="unknown job kind 'pottery'; known: .*style_training"):
        runner.submit(job)
    # Should one reach a worker anyway, it fails (the reason is the operator's: the log).
    done = execute_job(settings, job.id, ledger=ledger, catalog=load_catalog(settings.home))
    assert (done.state, done.error_code) == ("failed", "internal_error")


def test_the_thread_runner_runs_submitted_jobs(ledger: Ledger, settings: Settings, kinds):
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    runner = JobRunner(settings, ledger, load_catalog(settings.home))
    job = jobs.create(tenant.id, "counts", {"steps": 2})
    runner.submit(job)
    runner.wait(timeout=30)
    assert jobs.get(tenant.id, job.id).state == "succeeded"
    runner.close()


# A worker in another process (as a Ray task on another node would be): it sees the
# cancel only through the database.
WORKER = """
import sys, time
from serving.core.jobs import JobKind, register_kind
from serving.core.jobs.runner import execute_job
from serving.core.settings import Settings

def slow(ctx):
    (ctx.workspace / "partial.bin").write_bytes(b"x")
    for step in range(1, 10_000):
        ctx.report(step=step, total=10_000)
        time.sleep(0.02)
    return {}

register_kind("slow", JobKind(slow))
settings = Settings.from_env({}, home=sys.argv[1], database=sys.argv[2])
print(execute_job(settings, sys.argv[3]).state)
"""


def test_a_worker_in_another_process_stops_when_cancelled(ledger: Ledger, settings: Settings):
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 10)
    reservation = ledger.reserve(tenant.id, 10)
    job = jobs.create(tenant.id, "slow", {}, price=10, reservation_id=reservation.id)
    workspace_of(settings, job.id).mkdir(parents=True)
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(settings.home), settings.database_url, job.id],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while jobs.get(tenant.id, job.id).progress.get("step", 0) < 3:
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.05)
        cancelling, ended = jobs.request_cancel(tenant.id, job.id)
        assert not ended and cancelling.cancel_requested
        out, _ = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert out.strip() == "cancelled"
    done = jobs.get(tenant.id, job.id)
    assert done.state == "cancelled" and done.progress["step"] < 100
    assert ledger.balance(tenant.id).available == 10
    assert not workspace_of(settings, job.id).exists()


def test_job_cancelled_is_an_exception_a_kind_may_raise():
    assert issubclass(JobCancelled, Exception)


def test_jobs_whose_worker_is_gone_are_failed_and_settled(ledger: Ledger, settings: Settings):
    jobs = Jobs(ledger.engine)
    tenant = ledger.create_tenant("studio")
    ledger.grant(tenant.id, 100)
    made = []
    for _ in range(3):
        reservation = ledger.reserve(tenant.id, 20)
        made.append(jobs.create(tenant.id, "counts", {}, price=20, reservation_id=reservation.id))
    silent, waiting, reporting = made
    jobs.start(silent.id)
    jobs.start(reporting.id)
    jobs.report(reporting.id, {"step": 1})
    runner = JobRunner(settings, ledger, load_catalog(settings.home))
    now = datetime.now(UTC)
    assert runner.reap_stale(now + timedelta(minutes=20)) == []  # silent, but not for long
    # An hour on: running jobs that said nothing for 30 minutes are given up; a queued
    # one may wait a day for resources.
    assert sorted(runner.reap_stale(now + timedelta(hours=1))) == sorted([silent.id, reporting.id])
    assert jobs.load(silent.id).state == "failed"
    assert "stopped reporting" in jobs.load(silent.id).error
    assert jobs.load(silent.id).error_code == "worker_lost"
    assert jobs.load(waiting.id).state == "queued"
    assert runner.reap_stale(now + timedelta(days=2)) == [waiting.id]
    assert jobs.load(waiting.id).state == "failed"
    # Their credits came back; nothing is held.
    balance = ledger.balance(tenant.id)
    assert (balance.available, balance.held) == (100, 0)
    assert runner.reap_stale(now + timedelta(days=3)) == []  # nothing left to reap
