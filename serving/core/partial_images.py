"""An image order's step previews as they come, for answers that stream them (OpenAI's
``stream: true`` with ``partial_images``; issue 22).

    stream = await PreviewStream.start(lambda: core.generations.create_openai(...))
    async for item in stream:      # Partial, Partial, …, then the use case's result
        ...

The use case runs unchanged, as a task with a ``PreviewProgress`` in its context
(``serving.core.order_progress``): the paid path then runs its model calls as streams
and hands every step to it; the steps that carry previews (``preview_every``, which the
caller sets on the order) become ``Partial`` items. ``start`` returns once the order's
price is held: a refusal before that (400, 402, 404, ...) is raised by ``start`` itself,
so the caller answers it as the synchronous route would, with nothing held or charged.
Leaving the stream early (a client that hangs up) cancels the order: the model call stops
at its next step and the paid path releases the credits of undelivered images.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipelines.progress import StepEvent
from serving.core.order_progress import ORDER_PROGRESS, OrderProgress

T = TypeVar("T")


@dataclass(frozen=True)
class Partial:
    """One step preview of one of the order's images (``image``: its index in the order)."""

    image: int
    step: int
    total: int
    webp: bytes


class PreviewProgress(OrderProgress):
    """What the paid path tells a streamed order: its price held, its steps' previews."""

    def __init__(self) -> None:
        self.reserved = asyncio.Event()
        self.partials: asyncio.Queue[Partial] = asyncio.Queue()

    def held(self, credits: int) -> None:
        self.reserved.set()

    def step(self, event: StepEvent) -> None:  # on the order's loop (paid_images.generate)
        for offset, webp in enumerate(event.previews or ()):
            image = event.images_done + offset
            self.partials.put_nowait(Partial(image, event.step, event.total, webp))


class PreviewStream(Generic[T]):
    """A running order's partials, then its result (see the module's docstring)."""

    def __init__(self, progress: PreviewProgress, task: asyncio.Task[T]) -> None:
        self._progress = progress
        self._task = task

    @classmethod
    async def start(cls, produce: Callable[[], Awaitable[T]]) -> PreviewStream[T]:
        """Run ``produce`` (a use case's coroutine) with its previews heard; return once
        its price is held, or raise what it raised before."""
        progress = PreviewProgress()
        context = contextvars.copy_context()
        context.run(ORDER_PROGRESS.set, progress)
        task = asyncio.get_running_loop().create_task(_run(produce), context=context)
        reserved = asyncio.ensure_future(progress.reserved.wait())
        try:
            await asyncio.wait({task, reserved}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()  # the caller went away before anything was streamed
            raise
        finally:
            reserved.cancel()
        if not progress.reserved.is_set():
            task.result()  # its error: refused before anything was held
            raise RuntimeError("a streamed order finished without holding its price")
        return cls(progress, task)

    async def __aiter__(self) -> AsyncIterator[Partial | T]:
        """The partials as they come, then the result (or the order's error). Whoever
        iterates calls ``close`` when done, however it ends."""
        queue = self._progress.partials
        while not self._task.done():
            getter = asyncio.ensure_future(queue.get())
            try:
                await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()  # an item it did not take stays in the queue
            if getter.done() and not getter.cancelled():
                yield getter.result()
        while not queue.empty():
            yield queue.get_nowait()
        yield self._task.result()

    async def close(self) -> None:
        """Cancel the order if it still runs (its reader left: a client hung up) and wait
        until the paid path has released what it held."""
        if not self._task.done():
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _run(produce: Callable[[], Awaitable[T]]) -> T:
    return await produce()
