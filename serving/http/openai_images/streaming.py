"""OpenAI's streamed image answers: ``stream: true`` with ``partial_images`` (0-3) on
``POST /v1/images/generations`` and ``POST /v1/images/edits``, as Server-Sent Events in
OpenAI's shape, so the official SDKs iterate them unchanged:

    event: image_generation.partial_image     (image_edit.partial_image on edits)
    data: {"type": ..., "b64_json": ..., "partial_image_index": 0, "size": "128x128", ...}

    event: image_generation.completed         (image_edit.completed)
    data: {"type": ..., "b64_json": ..., "size": ..., "usage": {...}, ...}

What Kiln decided where OpenAI's reference is silent or does not fit:

- Partial images are the model's step previews (``pipelines.previews``: a tiny
  autoencoder or the family's projection), asked every ``steps // (partial_images + 1)``
  steps (``pipelines.previews.spread_every``); each image gets at most
  ``partial_images`` of them, from steps before its last one, so a call of few steps
  gives fewer (OpenAI: "may receive fewer"). They are previews: at most 256 px on the long
  side, in the request's ``output_format``.
- With ``n > 1`` each image's partials come, then its ``completed`` event, in the order of
  the images: the images share one pipeline call, so the first image's partials stream as
  they are made and the others' are sent after the image before them. A partial's
  ``size`` is its own (the preview's), a completed image's the image's.
- ``completed`` carries the delivered image exactly as the non-streamed answer's
  ``b64_json`` would, and ``usage`` with zero tokens (Kiln counts images, not tokens: the
  charge is the route's price per image, as without ``stream``).
- Refused before anything streams, as the non-streamed route refuses (400, 402, 404, ...):
  the answer is then the error shape, not a stream. An error after the stream began (a
  replica lost) is a last ``event: error`` with the error body; the paid path has
  released the credits of every image not delivered.
- A client that hangs up cancels the order at its next denoising step (credits released).
- ``response_format: "url"`` and an ``Idempotency-Key`` are refused with ``stream``
  (400 naming the field): streamed images are base64, and a stream cannot be replayed.
  ``Prefer: respond-async`` is ignored on a streamed request (the stream is the answer).
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import StreamingResponse

from pipelines.params import ParamError
from serving.core.app import KilnCore
from serving.core.imaging import encode_image
from serving.core.paid_images import ImageResult
from serving.core.partial_images import Partial, PreviewStream
from serving.http.errors import api_error_for
from serving.http.idempotency import HEADER as IDEMPOTENCY_HEADER
from serving.http.jobs.events import EventStream
from serving.http.openai_images.responses import ResponseOptions, delivered_bytes


@dataclass(frozen=True)
class StreamShape:
    """One route's streamed answer: its event prefix, the partials it asks, the format."""

    prefix: str  # image_generation | image_edit
    partial_images: int
    options: ResponseOptions
    background: str = "auto"
    quality: str = "auto"


def check_stream(request: Request, response_format: str) -> None:
    """Refuse what a stream cannot do (400 naming the field; nothing held)."""
    if response_format == "url":
        raise ParamError("response_format", "streamed images come as b64_json, not url")
    if request.headers.get(IDEMPOTENCY_HEADER):
        raise ParamError("stream", "a streamed answer cannot be replayed: drop Idempotency-Key")


async def stream_images(
    core: KilnCore, produce: Callable[[], Awaitable[ImageResult]], shape: StreamShape
) -> StreamingResponse:
    """``produce`` (the route's use case) answered as OpenAI's image stream; refusals
    before its price is held are raised here, as the non-streamed route raises them."""
    stream = await PreviewStream.start(produce)
    # However it ends (done, or the client gone mid-call), the order is closed after:
    # cancelled at its next step if it still runs, credits released.
    return EventStream(
        _events(core, stream, shape),
        stream.close,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _events(
    core: KilnCore, stream: PreviewStream[ImageResult], shape: StreamShape
) -> AsyncIterator[str]:
    taken: dict[int, int] = {}
    waiting: dict[int, list[str]] = {}  # later images' partials, sent after the image before
    result: ImageResult | None = None
    try:
        async for item in stream:
            if not isinstance(item, Partial):
                result = item
                continue
            index = taken.get(item.image, 0)
            if item.step >= item.total or index >= shape.partial_images:
                continue  # the last step is the completed image; past the asked count
            taken[item.image] = index + 1
            message = _partial(item, index, shape)
            if item.image == 0:
                yield message
            else:
                waiting.setdefault(item.image, []).append(message)
    except Exception as exc:  # after the stream began: the SDK raises it as an APIError
        yield _message("error", api_error_for(exc).body())
        return
    if result is None:
        return
    fmt = shape.options.output_format
    images = delivered_bytes(result.images, fmt, shape.options.output_compression)
    for index, (data, delivered) in enumerate(zip(images, result.images, strict=True)):
        if index:
            for message in waiting.pop(index, []):
                yield message
        asset = delivered.asset
        yield _message(
            f"{shape.prefix}.completed",
            {
                "type": f"{shape.prefix}.completed",
                "b64_json": base64.b64encode(data).decode(),
                "created_at": int(time.time()),
                "size": f"{asset.width}x{asset.height}",
                "output_format": fmt,
                "background": shape.background,
                "quality": shape.quality,
                "usage": _NO_TOKENS,
                # Kiln's own, as on the non-streamed answer.
                "asset_id": asset.id,
                "revised_prompt": asset.prompt,
            },
        )


# Kiln counts images, not tokens: OpenAI's usage block, with nothing in it.
_NO_TOKENS = {
    "input_tokens": 0,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
    "output_tokens": 0,
    "total_tokens": 0,
}


def _partial(item: Partial, index: int, shape: StreamShape) -> str:
    fmt = shape.options.output_format
    data, size = _in_format(item.webp, fmt)
    return _message(
        f"{shape.prefix}.partial_image",
        {
            "type": f"{shape.prefix}.partial_image",
            "b64_json": base64.b64encode(data).decode(),
            "partial_image_index": index,
            "created_at": int(time.time()),
            "size": size,
            "output_format": fmt,
            "background": shape.background,
            "quality": shape.quality,
        },
    )


def _in_format(webp: bytes, fmt: str) -> tuple[bytes, str]:
    """A preview (WebP) in the request's ``output_format``, and its own ``"WxH"``."""
    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(webp))
    size = f"{image.width}x{image.height}"
    if fmt == "webp":
        return webp, size
    return encode_image(np.asarray(image.convert("RGB")), fmt, None), size


def _message(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
