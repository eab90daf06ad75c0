"""The job routes' work: database reads off the event loop, the SSE stream as a poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from serving.auth import Tenant
from serving.jobs.protocol import JobObject, sse_message
from serving.state import AppState

# How often a stream looks for new events: the worker may be another process or node,
# so the database is asked rather than waited on.
POLL_S = 0.25
# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15.0


class ServingJobs:
    """``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/events``, ``DELETE /v1/jobs/{id}``."""

    def __init__(self, state: AppState):
        self.state = state

    async def get(self, tenant: Tenant, job_id: str) -> JobObject:
        return JobObject.of(await asyncio.to_thread(self.state.jobs.get, tenant.id, job_id))

    async def cancel(self, tenant: Tenant, job_id: str) -> JobObject:
        job = await asyncio.to_thread(self.state.job_runner.cancel, tenant.id, job_id)
        return JobObject.of(job)

    async def check(self, tenant: Tenant, job_id: str) -> None:
        """404 before a stream starts, for a job the caller cannot see."""
        await asyncio.to_thread(self.state.jobs.get, tenant.id, job_id)

    async def events(self, tenant: Tenant, job_id: str, after: int = 0) -> AsyncIterator[str]:
        """Every event numbered above ``after``, as SSE messages, until the job ends.

        The job's state is read *before* its events: a job seen finished has written all
        of its events (its last state event commits with the state), so once those are
        sent the stream can end.
        """
        jobs = self.state.jobs
        last_sent = time.monotonic()
        while True:
            job = await asyncio.to_thread(jobs.get, tenant.id, job_id)
            events = await asyncio.to_thread(jobs.events, job_id, after)
            for event in events:
                yield sse_message(event)
                after = event.seq
            if events:
                last_sent = time.monotonic()
            if job.done and after >= job.event_seq:
                return
            if not events:
                if time.monotonic() - last_sent >= KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    last_sent = time.monotonic()
                await asyncio.sleep(POLL_S)
