"""OpenAI's images response (``ImagesResponse``) from the core's delivered images:
base64 in the asked format, or signed, expiring URLs of files in the core's FileStore."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from serving.core.app import KilnCore
from serving.core.assets.delivery import Delivered
from serving.core.imaging import b64, encode_image
from serving.http.openai_images.protocol import ImageObject, ImagesResponse


@dataclass(frozen=True)
class ResponseOptions:
    """How an OpenAI images response carries its images."""

    response_format: str  # b64_json | url
    output_format: str  # png | jpeg | webp
    output_compression: int | None
    base_url: str


def delivered_bytes(delivered: list[Delivered], fmt: str, compression: int | None) -> list[bytes]:
    """The images in the asked format: the delivered PNG as stored (metadata and marks
    kept) for ``png``, encoded from the same pixels for JPEG and WebP."""
    if fmt == "png":
        return [d.png for d in delivered]
    return [encode_image(d.pixels, fmt, compression) for d in delivered]


async def images_response(
    core: KilnCore, delivered: list[Delivered], options: ResponseOptions
) -> ImagesResponse:
    """OpenAI's images response for delivered assets: base64, or signed URLs under the
    server's public URL (or ``options.base_url``); ``output_compression`` applies to JPEG
    and WebP, PNG is the stored asset file. ``revised_prompt`` is the prompt each image
    was made with (a style's trigger words in front)."""
    fmt = options.output_format
    encoded = await asyncio.to_thread(delivered_bytes, delivered, fmt, options.output_compression)
    if options.response_format == "url":
        file_ids = await asyncio.to_thread(lambda: [core.files.save(data, fmt) for data in encoded])
        public = core.settings.public_url or options.base_url
        data = [
            ImageObject(
                url=core.files.signed_url(public, fid),
                revised_prompt=d.asset.prompt,
                asset_id=d.asset.id,
            )
            for fid, d in zip(file_ids, delivered, strict=True)
        ]
    else:
        data = [
            ImageObject(b64_json=b64(e), revised_prompt=d.asset.prompt, asset_id=d.asset.id)
            for e, d in zip(encoded, delivered, strict=True)
        ]
    first = delivered[0].asset
    return ImagesResponse(
        created=int(time.time()), data=data, output_format=fmt, size=f"{first.width}x{first.height}"
    )
