"""HTTP routes of jobs: status, progress events (Server-Sent Events), cancel."""

from __future__ import annotations

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from serving.auth import TenantDep
from serving.jobs.protocol import JobObject
from serving.jobs.serving import ServingJobs
from serving.state import StateDep

router = APIRouter(tags=["jobs"])


@router.get("/v1/jobs/{job_id}", response_model=JobObject)
async def get_job(job_id: str, state: StateDep, tenant: TenantDep) -> JobObject:
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
    state: StateDep,
    tenant: TenantDep,
    last_event_id: int | None = Header(None, description="resume after this event"),
) -> StreamingResponse:
    """The job's events as Server-Sent Events, from the first (or after
    ``Last-Event-ID``) until the job ends: ``event: state`` (queued, running, succeeded
    with its result, failed with its error, cancelled) and ``event: progress`` (step,
    total, loss), each with ``id:`` its number."""
    serving = ServingJobs(state)
    await serving.check(tenant, job_id)
    return StreamingResponse(
        serving.events(tenant, job_id, after=last_event_id or 0),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


@router.delete("/v1/jobs/{job_id}", response_model=JobObject)
async def cancel_job(job_id: str, state: StateDep, tenant: TenantDep) -> JobObject:
    """Cancel the caller's job: a queued job ends at once, a running one stops at its next
    step (``cancel_requested`` until then); partial work is discarded and held credits
    return. A finished job is answered as it is."""
    return await ServingJobs(state).cancel(tenant, job_id)
