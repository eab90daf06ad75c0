"""HTTP routes of jobs: status, progress events (Server-Sent Events), cancel."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from serving.core.jobs.follow import follow, open_stream
from serving.http.auth import TenantDep
from serving.http.credentials import api_key_from
from serving.http.deps import CoreDep
from serving.http.jobs.events import EventStream, sse_messages
from serving.http.jobs.protocol import JobObject

router = APIRouter(tags=["jobs"])


@router.get("/v1/jobs/{job_id}", response_model=JobObject)
async def get_job(job_id: str, core: CoreDep, tenant: TenantDep) -> JobObject:
    """One of the caller's jobs: state, last progress (step, total, loss), result or error.
    Another tenant's job is 404."""
    return JobObject.of(await asyncio.to_thread(core.jobs.get, tenant.id, job_id))


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(
    job_id: str,
    request: Request,
    core: CoreDep,
    tenant: TenantDep,
    last_event_id: int | None = Header(None, description="resume after this event"),
) -> StreamingResponse:
    """The job's events as Server-Sent Events, from the first (or after
    ``Last-Event-ID``) until the job ends: ``event: state`` (queued, running, succeeded
    with its result, failed with its error, cancelled) and ``event: progress`` (step,
    total, loss), each with ``id:`` its number. A tenant holds at most
    ``KILN_EVENT_STREAMS_PER_TENANT`` streams per server process (429
    ``too_many_streams``); a stream whose API key is revoked ends within seconds with an
    ``event: error`` carrying the 401 error body."""
    await asyncio.to_thread(core.jobs.get, tenant.id, job_id)  # 404 before a stream starts
    key = api_key_from(request.headers.get("authorization"))
    release = open_stream(tenant.id, core.settings.event_streams_per_tenant)
    batches = follow(
        core.jobs, core.accounts, tenant.id, job_id,
        key_id=tenant.key_id, key=key, after=last_event_id or 0,
    )  # fmt: skip
    return EventStream(
        sse_messages(batches),
        on_close=release,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


@router.delete("/v1/jobs/{job_id}", response_model=JobObject)
async def cancel_job(job_id: str, core: CoreDep, tenant: TenantDep) -> JobObject:
    """Cancel the caller's job: a queued job ends at once, a running one stops at its next
    step (``cancel_requested`` until then); partial work is discarded and held credits
    return. A finished job is answered as it is."""
    return JobObject.of(await asyncio.to_thread(core.job_runner.cancel, tenant.id, job_id))
