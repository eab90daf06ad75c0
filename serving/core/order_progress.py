"""What an image order tells whoever runs it as a job: its credits are held, its steps.

The use cases (generations, edits, agentic, OpenAI's) take no progress argument: an
order run as a job (``serving.core.jobs.image_jobs``) sets ``ORDER_PROGRESS`` in the
context of the task that runs it, and the one paid path (``serving.core.paid_images``)
reports to it — ``held`` once the whole price is reserved (so the job's submitter can
answer 202 only then, with a 402 or a 400 still answered at once), ``step`` for every
denoising step of the order's model calls (which then go through the model client's
``generate_stream``). A synchronous request sets nothing and pays nothing for it.
"""

from __future__ import annotations

from contextvars import ContextVar

from pipelines.progress import StepEvent


class OrderProgress:
    """The listener of one order; the default does nothing."""

    def held(self, credits: int) -> None:
        """The order's price (``credits``) is reserved; its model step starts."""

    def step(self, event: StepEvent) -> None:
        """A denoising step of one of the order's model calls finished."""


# The order progress of the running task (None: nobody listens).
ORDER_PROGRESS: ContextVar[OrderProgress | None] = ContextVar("kiln_order_progress", default=None)
