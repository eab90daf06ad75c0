"""``Prefer: respond-async`` and client hang-ups on the image routes.

- ``respond_async``: whether the request's ``Prefer`` header (RFC 7240) asks for
  ``respond-async``. Preferences Kiln does not know, and parameters of known ones, are
  ignored, as the RFC says; so is a malformed header.
- ``until_hang_up``: a synchronous request's work, cancelled when its client hangs up
  (``http.disconnect`` on the ASGI channel once the body is read): the model call stops
  at its next denoising step and the paid path releases every credit not captured. The
  answer to nobody is a bare 499 (nginx's "client closed request"), which only the
  access log and the metrics see.
- ``job_params``: what a job records of the request that made it (``params``): the route
  and the JSON body's scalar fields (no images, which may be megabytes).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import Request, Response

logger = logging.getLogger(__name__)

T = TypeVar("T")
# nginx's "client closed request": logged and counted, never read by a client.
CLIENT_CLOSED = 499
MAX_PARAM_CHARS = 500


def respond_async(request: Request) -> bool:
    """Whether ``Prefer`` asks for ``respond-async`` (any of several headers, any case)."""
    for header in request.headers.getlist("prefer"):
        for preference in header.split(","):
            token = preference.split(";", 1)[0].split("=", 1)[0].strip().lower()
            if token == "respond-async":
                return True
    return False


async def _disconnected(request: Request) -> None:
    """Returns once the client hangs up (call only after the body has been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_hang_up(request: Request, work: Awaitable[T]) -> T | Response:
    """``work``'s answer; a 499 once it is cancelled because the client hung up first."""
    await request.body()  # read (and kept) before listening: the work may read it later
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done() and not gone.done():  # this request itself was cancelled
            task.cancel()
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    # Wait for the cancellation to unwind: the credits are released by then.
    await asyncio.gather(task, return_exceptions=True)
    logger.info("client hung up on %s: its request was cancelled", request.url.path)
    return Response(status_code=CLIENT_CLOSED)


async def job_params(request: Request) -> dict[str, Any]:
    """The route and the JSON body's short scalar fields, for the job's ``params``."""
    params: dict[str, Any] = {"route": request.url.path}
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(await request.body())
        except ValueError:
            return params
        if isinstance(body, dict):
            for name, value in body.items():
                short = not isinstance(value, str) or len(value) <= MAX_PARAM_CHARS
                if isinstance(value, (str, int, float, bool)) and short:
                    params[name] = value
    return params
