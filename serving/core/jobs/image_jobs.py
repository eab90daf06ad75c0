"""Image requests run as jobs (``Prefer: respond-async``): generations, edits, agentic
and OpenAI's image routes, on the same use cases as their synchronous answers.

    job = await image_jobs.submit(tenant_id, "generation", {"model": …}, produce)
    image_jobs.cancel(job.id)            # DELETE /v1/jobs/{id}: stop at the next step

Unlike training or upscale jobs (``serving.core.jobs.runner``: a function on a worker
thread or a Ray task), an image job is the synchronous request's own coroutine
(``produce``: it answers the response body) run as a task of this process's event loop,
because its work is already elsewhere: a model replica behind the ``ModelClient`` port.
The job's row, events and routes are the same as every job's (``Jobs``).

- **Submit**: ``produce`` starts at once with an ``OrderProgress`` in its context
  (``serving.core.order_progress``). Until the paid path has reserved the order's whole
  price nothing is stored: a 400, 403, 404 or 402 is raised to the submitter as the
  synchronous route would answer it. Once held, the job row is written (``running``,
  ``credits`` the price held) and the submitter answers 202.
- **Progress**: each denoising step updates the job's ``progress`` (``step``, ``total``,
  ``images_done``, ``images``, ``eta_s``) and appends a ``progress`` event, at most every
  ``REPORT_EVERY_S`` (the last step always). While its model call waits in the model's
  fair queue (``serving.core.scheduling``), ``progress`` is its place instead:
  ``queue_position`` (requests admitted before it), ``images_ahead`` and ``eta_s``.
- **End**: ``succeeded`` with ``result`` exactly the synchronous response body; ``failed``
  with the public error (``public_error``): the paid path released the credits.
- **Cancel**: the task is cancelled (here, or by its next progress report when another
  ingress process took the ``DELETE``): the model call stops at its next denoising step
  (``pipelines.progress``), the paid path releases every credit not captured, and the
  job ends ``cancelled``. A generation's images come out of their pipeline call
  together, so a job cancelled mid-call has no finished image to keep: it is charged
  nothing. Images the order had already delivered stay delivered and charged (none for
  today's single-call orders).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pipelines.progress import StepEvent
from serving.core.jobs.errors import public_error
from serving.core.jobs.service import Job, Jobs
from serving.core.order_progress import ORDER_PROGRESS, OrderProgress
from serving.core.scheduling.context import queue_listener
from serving.core.scheduling.scheduler import QueuePosition

logger = logging.getLogger(__name__)

# The job kinds of image requests, named by their result's body shape.
IMAGE_JOB_KINDS = ("generation", "edit", "agentic", "openai_image")
# The least time between two progress writes of one job (the last step is always written).
REPORT_EVERY_S = 0.25


class JobProgress(OrderProgress):
    """An order's progress on its way to its job row: held once, steps throttled."""

    def __init__(self) -> None:
        self.price = 0
        self.reserved = asyncio.Event()
        self.job_id: str | None = None
        self.cancel_requested = False  # by another process, seen in a progress write
        self._latest: dict[str, Any] | None = None
        self._changed = asyncio.Event()
        # Set when the order ended: the writer writes what is left and returns. It is
        # never cancelled: a write cancelled mid-way would lose the previews it had taken.
        self._ended = asyncio.Event()
        self._first_step_at: float | None = None
        # Step previews not written yet (``preview`` events; each is an image: all kept).
        self._previews: list[dict[str, Any]] = []

    def held(self, credits: int) -> None:
        self.price = credits
        self.reserved.set()

    def queued(self, position: QueuePosition) -> None:
        """The order's model call waits in its model's fair queue (``queue_listener``)."""
        self._latest = {
            "queue_position": position.requests_ahead,
            "images_ahead": position.images_ahead,
            "eta_s": None if position.eta_s is None else round(position.eta_s, 2),
        }
        self._changed.set()

    def step(self, event: StepEvent) -> None:
        now = time.monotonic()
        if event.step == 1 or self._first_step_at is None:
            self._first_step_at = now
        progress: dict[str, Any] = {
            "step": event.step,
            "total": event.total,
            "images_done": event.images_done,
            "images": event.images_done + event.images,
        }
        if event.step > 1:
            per_step = (now - self._first_step_at) / (event.step - 1)
            progress["eta_s"] = round(per_step * (event.total - event.step), 2)
        self._latest = progress
        for offset, webp in enumerate(event.previews or ()):
            self._previews.append({
                "step": event.step, "total": event.total, "image": event.images_done + offset,
                "webp": base64.b64encode(webp).decode(),
            })  # fmt: skip
        self._changed.set()

    async def write_previews(self, jobs: Jobs, job_id: str) -> None:
        """Append the previews not written yet as ``preview`` events, oldest first."""
        previews, self._previews = self._previews, []
        if previews:
            await asyncio.to_thread(_append_previews, jobs, job_id, previews)

    def end(self) -> None:
        """The order ended: ``write`` returns after writing what it has."""
        self._ended.set()
        self._changed.set()

    def pending(self, done: bool) -> dict[str, Any] | None:
        """The progress not written yet (all images done when the order ``done``)."""
        progress, self._latest = self._latest, None
        if progress is not None and done:
            progress["images_done"] = progress.get("images", 0)
        return progress

    async def write(self, jobs: Jobs, job_id: str, on_cancel: Callable[[], None]) -> None:
        """Write the latest progress to the job while the job runs (a task that returns
        once ``end`` is called, having written what it had taken); calls ``on_cancel``
        when the job's row says cancel."""
        while not self._ended.is_set():
            await self._changed.wait()
            self._changed.clear()
            await self.write_previews(jobs, job_id)
            if self._ended.is_set():
                return  # the last progress is the order's end's to write (``pending``)
            progress, self._latest = self._latest, None
            if progress is None:
                continue
            if await asyncio.to_thread(jobs.report, job_id, progress):
                on_cancel()
            if progress.get("step", 0) < progress.get("total", 0):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), REPORT_EVERY_S)


def _append_previews(jobs: Jobs, job_id: str, previews: list[dict[str, Any]]) -> None:
    for preview in previews:
        jobs.preview(job_id, preview)


class ImageJobs:
    """Image jobs of this process: their tasks, by job id."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self._tasks: dict[str, asyncio.Task] = {}

    async def submit(
        self,
        tenant_id: str,
        kind: str,
        params: dict[str, Any],
        produce: Callable[[], Awaitable[dict[str, Any]]],
    ) -> Job:
        """Start ``produce`` (the synchronous route's answer, as its JSON body) as a job of
        ``kind`` for ``tenant_id``; returns the job once its credits are held. Raises what
        ``produce`` raises before that (nothing is then stored or charged)."""
        if kind not in IMAGE_JOB_KINDS:
            raise ValueError(f"unknown image job kind {kind!r}")
        progress = JobProgress()
        context = contextvars.copy_context()
        context.run(ORDER_PROGRESS.set, progress)
        context.run(queue_listener.set, progress.queued)
        attached: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.get_running_loop().create_task(
            self._run(progress, attached, produce), context=context
        )
        reserved = asyncio.ensure_future(progress.reserved.wait())
        try:
            await asyncio.wait({task, reserved}, return_when=asyncio.FIRST_COMPLETED)
            if not reserved.done():
                task.result()  # its error: refused before anything was held
                raise RuntimeError("an image job finished without holding its price")
            job = await asyncio.to_thread(
                self.jobs.create, tenant_id, kind, params, price=progress.price
            )
            await asyncio.to_thread(self.jobs.start, job.id)
        except BaseException:
            reserved.cancel()
            task.cancel()  # the submitter went away (or the database): nothing runs on
            raise
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        attached.set_result(job.id)
        return await asyncio.to_thread(self.jobs.load, job.id)

    async def _run(
        self,
        progress: JobProgress,
        attached: asyncio.Future[str],
        produce: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        work = asyncio.ensure_future(produce())
        job_id: str | None = None
        writer: asyncio.Task | None = None
        outcome: dict[str, Any]
        try:
            await asyncio.wait({attached, work}, return_when=asyncio.FIRST_COMPLETED)
            if not attached.done():
                work.result()  # refused before its price was held: the submitter's error
                raise RuntimeError("an image job finished without holding its price")
            job_id = attached.result()
            writer = asyncio.ensure_future(progress.write(self.jobs, job_id, work.cancel))
            outcome = {"state": "succeeded", "result": await work}
        except asyncio.CancelledError:
            work.cancel()
            if job_id is None:
                raise
            outcome = {"state": "cancelled"}
        except Exception as exc:
            if job_id is None:
                raise
            logger.exception("image job %s failed", job_id)
            error, code = public_error(exc, job_id)
            outcome = {"state": "failed", "error": error, "error_code": code}
        finally:
            progress.end()
        if writer is not None:
            await asyncio.gather(writer, return_exceptions=True)
        await progress.write_previews(self.jobs, job_id)  # those the writer had not yet
        last = progress.pending(done=outcome["state"] == "succeeded")
        if last is not None:  # the last step, not written yet (written within the throttle)
            await asyncio.to_thread(self.jobs.report, job_id, last)
        if outcome["state"] == "cancelled" and not work.done():
            # Shielded from nothing: the paid path's release runs in the work's own
            # cancellation; wait for it so the job ends with its credits back.
            await asyncio.gather(work, return_exceptions=True)
        state = outcome.pop("state")
        await asyncio.to_thread(self.jobs.finish, job_id, state, **outcome)
        logger.info("image job %s %s", job_id, state)

    def cancel(self, job_id: str) -> bool:
        """Cancel the job's task if it runs in this process (whether it did)."""
        task = self._tasks.get(job_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def wait(self, job_id: str) -> None:
        """Wait for the job's task in this process to end (tests and shutdown)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
