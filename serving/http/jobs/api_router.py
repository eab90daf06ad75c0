"""HTTP routes of jobs: the caller's list, status, progress events (Server-Sent Events),
cancel."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from serving.core.errors import KilnError
from serving.core.jobs.follow import follow, open_stream
from serving.core.jobs.image_jobs import IMAGE_JOB_KINDS
from serving.core.jobs.runner import JOB_KINDS
from serving.core.jobs.service import JOB_STATES
from serving.http.auth import TenantDep
from serving.http.credentials import api_key_from
from serving.http.deps import CoreDep
from serving.http.jobs.events import EventStream, sse_messages
from serving.http.jobs.protocol import JobList, JobObject

router = APIRouter(tags=["jobs"])


@router.get("/v1/jobs", response_model=JobList)
async def list_jobs(
    core: CoreDep,
    tenant: TenantDep,
    kind: str | None = Query(None, description="only jobs of this kind"),
    state: Literal[JOB_STATES] | None = Query(None, description="only jobs in this state"),  # type: ignore[valid-type]
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="the last id of the previous page"),
) -> JobList:
    """The caller's jobs, newest first (kind, state, created, …); ``kind`` and ``state``
    narrow the list, ``after`` pages through it as ``/v1/assets`` does."""
    known = sorted({*JOB_KINDS, *IMAGE_JOB_KINDS})
    if kind is not None and kind not in known:
        raise KilnError(
            400, f"unknown job kind {kind!r}; known: {', '.join(known)}", param="kind",
            code="invalid_value",
        )  # fmt: skip
    page, more = await asyncio.to_thread(core.jobs.list, tenant.id, limit, after, kind, state)
    return JobList(data=[JobObject.of(job) for job in page], has_more=more)


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
    """Cancel the caller's job (another tenant's is 404, a finished one 409 ``job_finished``).

    - ``style_training``, ``upscale``, ``batch``: a queued job ends at once, a running one
      stops at its next step (``cancel_requested`` until then); partial work is discarded
      and held credits return.
    - ``generation``, ``edit``, ``agentic``, ``openai_image`` (``Prefer: respond-async``):
      the model call stops at its next denoising step; images already delivered stay
      charged, every other credit is released (a pipeline call's images finish together,
      so a job cancelled mid-call is charged nothing); where its images share a batched
      call with other requests, they are discarded and the call runs on for the others.
      The job ends ``cancelled``.
    """
    runner = core.job_runner
    job = await asyncio.to_thread(core.jobs.get, tenant.id, job_id)
    if job.done:
        raise KilnError(409, f"job {job_id!r} is already {job.state}", code="job_finished")
    job = await asyncio.to_thread(runner.cancel, tenant.id, job_id)
    if job.kind in IMAGE_JOB_KINDS:
        runner.images.cancel(job_id)  # its task, when it runs in this process
    return JobObject.of(job)
