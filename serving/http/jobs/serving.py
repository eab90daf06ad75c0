"""The job routes' work: database reads off the event loop, the SSE stream.

A progress stream (``events``) costs little while it waits, whoever writes the job:

- It wakes on change. A write made in this process (the thread backend's worker, a
  cancel) signals the job after its commit (``serving.core.jobs.watch.SIGNALS``), and the
  stream reads at once. A write by another process (a Ray task's worker, another ingress
  replica) raises no signal here, so the stream also polls every ``POLL_S``: that bounds
  how late such progress shows, and a second is plenty for a progress bar. Reads are at
  least ``MIN_READ_INTERVAL_S`` apart, so a job reporting fast is sent in batches. The old
  design (two queries every 0.25 s, each taking SQLite's write lock) made 50 streams
  400 write-locked transactions a second.
- Each wake-up is one read on ``read_only`` (``Jobs.watch``): the job's row, and its
  events only when its counter moved. On SQLite it takes no lock, so streams neither wait
  for writers nor hold them up.
- A tenant holds at most ``KILN_EVENT_STREAMS_PER_TENANT`` open streams per process
  (429 ``too_many_streams`` with ``retry-after`` past it); a stream's slot is freed when
  its response ends, whether the job ended, the client left or the key was revoked.
- The stream's API key is looked up again every ``KEY_RECHECK_S`` (answers shared by the
  streams of one key): once it is revoked, the stream sends a last ``event: error`` with
  the 401 body (DESIGN.md §5 shape, ``invalid_api_key``) and closes, rather than just
  closing, so a client can tell a revoked key from a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

from serving.core.app import KilnCore
from serving.core.errors import KilnError, too_many_requests
from serving.core.jobs.watch import KEYS, SIGNALS, STREAMS
from serving.http.auth import Tenant
from serving.http.credentials import invalid_key
from serving.http.jobs.protocol import JobObject, sse_message

logger = logging.getLogger(__name__)

# How often a stream asks the database, for progress written by another process.
POLL_S = 1.0
# The least time between two reads of one stream: a job that reports a hundred steps a
# second is sent in batches, not read a hundred times a second per stream.
MIN_READ_INTERVAL_S = 0.1
# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15.0
# What a client over the stream cap is told to wait before trying again.
STREAMS_RETRY_AFTER_S = 5


class ServingJobs:
    """``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/events``, ``DELETE /v1/jobs/{id}``."""

    def __init__(self, state: KilnCore):
        self.state = state

    async def get(self, tenant: Tenant, job_id: str) -> JobObject:
        return JobObject.of(await asyncio.to_thread(self.state.jobs.get, tenant.id, job_id))

    async def cancel(self, tenant: Tenant, job_id: str) -> JobObject:
        job = await asyncio.to_thread(self.state.job_runner.cancel, tenant.id, job_id)
        return JobObject.of(job)

    async def check(self, tenant: Tenant, job_id: str) -> None:
        """404 before a stream starts, for a job the caller cannot see."""
        await asyncio.to_thread(self.state.jobs.get, tenant.id, job_id)

    def open_stream(self, tenant: Tenant) -> Callable[[], None]:
        """Take one of the tenant's stream slots (429 ``too_many_streams`` when all are
        taken); returns what frees it."""
        cap = self.state.settings.event_streams_per_tenant
        if not STREAMS.acquire(tenant.id, cap):
            raise too_many_requests(
                f"too many open event streams: a tenant may hold {cap} at once "
                "(KILN_EVENT_STREAMS_PER_TENANT); close one or poll GET /v1/jobs/{id}",
                "too_many_streams",
                STREAMS_RETRY_AFTER_S,
            )
        return lambda: STREAMS.release(tenant.id)

    async def events(
        self, tenant: Tenant, job_id: str, key: str, after: int = 0
    ) -> AsyncIterator[str]:
        """Every event numbered above ``after``, as SSE messages, until the job ends or
        ``key`` (the caller's API key) is revoked."""
        jobs = self.state.jobs
        last_sent = last_checked = time.monotonic()
        last_read = float("-inf")
        with SIGNALS.watching(job_id) as changed:
            while True:
                await asyncio.sleep(max(0.0, last_read + MIN_READ_INTERVAL_S - time.monotonic()))
                changed.clear()  # before the read: a change during it wakes the next wait
                last_read = time.monotonic()
                job, events = await asyncio.to_thread(jobs.watch, tenant.id, job_id, after)
                now = time.monotonic()
                if events:
                    # One write for what one read found: a send costs more than its bytes.
                    yield "".join(sse_message(event) for event in events)
                    after = events[-1].seq
                    last_sent = now
                if job.done and after >= job.event_seq:
                    return
                if events and after < job.event_seq:
                    continue  # more than one read's worth was waiting
                if now - last_checked >= KEYS.every_s:
                    last_checked = now
                    if not await KEYS.alive(tenant.key_id, lambda: self._key_alive(key)):
                        logger.info("event stream of job %s closed: its key was revoked", job_id)
                        yield _error_message(invalid_key())
                        return
                if now - last_sent >= KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    last_sent = now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), POLL_S)

    def _key_alive(self, key: str) -> bool:
        try:
            return self.state.accounts.authenticate(key) is not None
        except Exception:  # the database is away: keep streaming, ask again later
            logger.warning("could not re-check an event stream's key", exc_info=True)
            return True


def _error_message(error: KilnError) -> str:
    """A last SSE message carrying an error in the API's error shape."""
    return f"event: error\ndata: {json.dumps(error.body(), separators=(',', ':'))}\n\n"
