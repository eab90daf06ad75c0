"""Long-running jobs: state in the database, work on a Ray task or a thread.

``Jobs`` (service) is the table, ``JobRunner`` (runner) starts jobs and settles them,
the routes are ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/events`` (SSE) and
``DELETE /v1/jobs/{id}``, and ``GET /v1/jobs`` lists them. Kinds: ``style_training``
(style_training.py), ``upscale``, ``batch``; and the image requests run with ``Prefer:
respond-async`` (image_jobs.py: ``generation``, ``edit``, ``agentic``, ``openai_image``).
"""

from serving.core.jobs.runner import JobKind, JobRunner, UnknownJobKind, execute_job, register_kind
from serving.core.jobs.service import Job, JobCancelled, JobEvent, JobFailed, Jobs, UnknownJob

__all__ = [
    "Job",
    "JobCancelled",
    "JobEvent",
    "JobFailed",
    "JobKind",
    "JobRunner",
    "Jobs",
    "UnknownJob",
    "UnknownJobKind",
    "execute_job",
    "register_kind",
]
