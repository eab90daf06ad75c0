"""Wire shapes of the job routes: the job object and its events."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from serving.core.jobs.service import Job, JobEvent


class JobObject(BaseModel):
    """A long-running job: poll ``GET /v1/jobs/{id}`` or stream ``…/events``."""

    object: str = "job"
    id: str
    kind: str = Field(
        description="what the job does: style_training, upscale, batch; an image request "
        "run with Prefer: respond-async names its result's shape: generation, edit, agentic, "
        "openai_image"
    )
    state: str = Field(description="queued | running | succeeded | failed | cancelled")
    progress: dict[str, Any] = Field(
        description="the last progress report: step, total, loss, stage (kind-specific); "
        "an image job: step, total, images_done, images, eta_s"
    )
    params: dict[str, Any] = Field(description="what the job was asked to do")
    result: dict[str, Any] | None = Field(
        description="what a succeeded job made (a style_training job: style_id, style; an "
        "image job: exactly the synchronous response body of its route)"
    )
    error: str | None = Field(
        description="why a failed job failed, in words for the client (an internal error "
        "is named by the job's id only: the server log has its detail)"
    )
    error_code: str | None = Field(
        description="a failed job's error code: internal_error, worker_lost, or the code "
        "the API gives the client error that ended it (insufficient_credits, …)"
    )
    cancel_requested: bool
    credits: int = Field(description="credits the job costs if it succeeds (0 when free)")
    created: datetime
    started: datetime | None
    finished: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobObject:
        return cls(
            id=job.id,
            kind=job.kind,
            state=job.state,
            progress=job.progress,
            params=job.params,
            result=job.result,
            error=job.error,
            error_code=job.error_code,
            cancel_requested=job.cancel_requested,
            credits=job.price,
            created=job.created,
            started=job.started,
            finished=job.finished,
        )


class JobList(BaseModel):
    """A page of the caller's jobs, newest first."""

    object: str = "list"
    data: list[JobObject]
    has_more: bool


def sse_message(event: JobEvent) -> str:
    """One event as a Server-Sent Events message (``id`` lets a client resume with
    ``Last-Event-ID``)."""
    data = json.dumps(event.data, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"
