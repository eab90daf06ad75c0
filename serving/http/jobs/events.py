"""A job's events as Server-Sent Events (``GET /v1/jobs/{id}/events``): the framing of
what the core's follower yields (``serving.core.jobs.follow``).

Each batch of events is one write of ``id:``/``event:``/``data:`` messages; a comment
line every ``KEEPALIVE_S`` of silence keeps proxies from closing a quiet stream; a
stream whose API key is revoked ends with a last ``event: error`` carrying the 401 body
(DESIGN.md §5 shape, ``invalid_api_key``) rather than just closing, so a client can tell
a revoked key from a dropped connection. The response frees the tenant's stream slot
when it ends, however it ends (``EventStream``).
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from serving.core.errors import KilnError
from serving.core.jobs.follow import KeyRevoked
from serving.core.jobs.service import JobEvent
from serving.http.credentials import invalid_key
from serving.http.jobs.protocol import sse_message

# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15.0


async def sse_messages(batches: AsyncGenerator[list[JobEvent], None]) -> AsyncIterator[str]:
    """``batches`` (``serving.core.jobs.follow.follow``) as SSE text."""
    last_sent = time.monotonic()
    try:
        async for events in batches:
            now = time.monotonic()
            if events:
                # One write for what one read found: a send costs more than its bytes.
                yield "".join(sse_message(event) for event in events)
                last_sent = now
            elif now - last_sent >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = now
    except KeyRevoked:
        yield _error_message(invalid_key())
    finally:
        await batches.aclose()


def _error_message(error: KilnError) -> str:
    """A last SSE message carrying an error in the API's error shape."""
    return f"event: error\ndata: {json.dumps(error.body(), separators=(',', ':'))}\n\n"


class EventStream(StreamingResponse):
    """A streaming response that closes its content and then calls ``on_close`` (plain or
    async) when it ends however it ends (the stream finished, the client went away, an
    error): a stream slot, or an order still running, is never leaked."""

    def __init__(
        self,
        content: AsyncIterator[str],
        on_close: Callable[[], Awaitable[None] | None],
        **kwargs: Any,
    ) -> None:
        super().__init__(content, **kwargs)
        self.content = content
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self.content.aclose()  # a client that left mid-wait leaves it suspended
            finally:
                closed = self.on_close()
                if inspect.isawaitable(closed):
                    await closed
