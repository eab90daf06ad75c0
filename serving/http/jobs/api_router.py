"""HTTP routes of jobs: status, progress events (Server-Sent Events), cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from serving.http.auth import TenantDep
from serving.http.credentials import api_key_from
from serving.http.deps import CoreDep
from serving.http.jobs.protocol import JobObject
from serving.http.jobs.serving import ServingJobs

router = APIRouter(tags=["jobs"])


@router.get("/v1/jobs/{job_id}", response_model=JobObject)
async def get_job(job_id: str, state: CoreDep, tenant: TenantDep) -> JobObject:
    """One of the caller's jobs: state, last progress (step, total, loss), result or error.
    Another tenant's job is 404."""
    return await ServingJobs(state).get(tenant, job_id)


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(
    job_id: str,
    request: Request,
    state: CoreDep,
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
    serving = ServingJobs(state)
    await serving.check(tenant, job_id)
    key = api_key_from(request.headers.get("authorization"))
    release = serving.open_stream(tenant)
    return EventStream(
        serving.events(tenant, job_id, key, after=last_event_id or 0),
        on_close=release,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


class EventStream(StreamingResponse):
    """A streaming response that calls ``on_close`` when it ends however it ends (the
    stream finished, the client went away, an error): a stream slot is never leaked."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None], **kwargs) -> None:
        super().__init__(content, **kwargs)
        self.content = content
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()
            await self.content.aclose()  # a client that left mid-wait leaves it suspended


@router.delete("/v1/jobs/{job_id}", response_model=JobObject)
async def cancel_job(job_id: str, state: CoreDep, tenant: TenantDep) -> JobObject:
    """Cancel the caller's job: a queued job ends at once, a running one stops at its next
    step (``cancel_requested`` until then); partial work is discarded and held credits
    return. A finished job is answered as it is."""
    return await ServingJobs(state).cancel(tenant, job_id)
