"""One request's step events on their way from the engine thread to an event loop.

    channel = StepChannel()                          # on the loop that will read it
    listener = ChannelListener([channel, None, …])   # the engine's CallListener of a call
    async for item in stream_of(channel, work):      # StepEvents, then what work returned
        ...

Where a model runs (a Serve replica, ``LocalModelClient``), the engine's step callback
puts events on the request's channel from the engine thread; the request's coroutine
yields them as they come. Leaving the stream early (the reader was cancelled: a client
hung up, a job was cancelled) marks the channel ``cancelled``, which the engine reads at
the next step (``pipelines.progress``).

Progress is a state, not a log: a reader slower than the steps gets only the latest step
event, except events carrying previews, which are all kept (each is an image).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TypeVar

from pipelines.progress import StepEvent

T = TypeVar("T")


class StepChannel:
    """Step events of one request for the event loop it was made on; and its cancel flag.

    ``keep=False``: events are dropped (a caller that only needs the cancel flag)."""

    def __init__(self, keep: bool = True) -> None:
        self.loop = asyncio.get_running_loop()
        self.keep = keep
        self.cancelled = False
        self._pending: list[StepEvent] = []
        self.ready = asyncio.Event()

    def put(self, event: StepEvent) -> None:
        """Hand ``event`` to the channel's loop (from any thread)."""
        if self.keep:
            self.loop.call_soon_threadsafe(self._add, event)

    def _add(self, event: StepEvent) -> None:
        if self._pending and self._pending[-1].previews is None:
            self._pending[-1] = event  # the older step is stale once a newer one is here
        else:
            self._pending.append(event)
        self.ready.set()

    def take(self) -> list[StepEvent]:
        """The events not read yet, oldest first (on the channel's loop)."""
        events, self._pending = self._pending, []
        self.ready.clear()
        return events


class ChannelListener:
    """The engine's ``CallListener`` over the channels of a call's requests, by index
    (``None``: a request nobody listens to and nobody can cancel)."""

    def __init__(self, channels: Sequence[StepChannel | None]) -> None:
        self.channels = list(channels)

    def on_step(self, event: StepEvent) -> None:
        channel = self.channels[event.request_index]
        if channel is not None:
            channel.put(event)

    def cancelled(self, request_index: int) -> bool:
        channel = self.channels[request_index]
        return channel is not None and channel.cancelled


async def stream_of(channel: StepChannel, work: Awaitable[T]) -> AsyncIterator[StepEvent | T]:
    """``channel``'s events while ``work`` runs, then ``work``'s answer (or its error).

    A reader that stops early (cancelled, or closing the stream) cancels the request:
    ``channel.cancelled`` is set for the engine and ``work`` is cancelled."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            waiter = asyncio.ensure_future(channel.ready.wait())
            try:
                await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            for event in channel.take():
                yield event
        await asyncio.sleep(0)  # events the engine put just before it returned
        for event in channel.take():
            yield event
        yield task.result()
    finally:
        if not task.done():
            channel.cancelled = True
            task.cancel()
