"""What a job's client is told of its failure (every kind: worker jobs and image jobs)."""

from __future__ import annotations

from serving.core.jobs.service import JobFailed
from serving.core.lower_errors import kiln_error_for

# What a client is told of a failure whose detail is not for it (see the log, by job id).
INTERNAL_ERROR = (
    "the job failed on an internal error (job {job_id}); the server log has the details"
)


def public_error(exc: BaseException, job_id: str) -> tuple[str, str]:
    """What the client is told of a job's failure: a ``JobFailed``'s message and code,
    a client error's (4xx: credits, a bad parameter, a license) as the API would answer
    it, else a generic message and ``internal_error``, or the 5xx's own code."""
    if isinstance(exc, JobFailed):
        return str(exc), exc.code
    answer = kiln_error_for(exc)
    if answer.status < 500:
        return answer.message, answer.code or "invalid_request"
    return INTERNAL_ERROR.format(job_id=job_id), answer.code or "internal_error"
