"""OpenAI-compatible image generation on the same model handles as the native route."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np

from serving.assets.delivery import Delivered
from serving.auth import Tenant
from serving.generations.serving import generate_and_deliver
from serving.imaging import b64, encode_image
from serving.openai_images.protocol import ImageGenerationRequest, ImageObject, ImagesResponse
from serving.state import AppState


def delivered_bytes(delivered: list[Delivered], fmt: str, compression: int | None) -> list[bytes]:
    """The images in the asked format: the delivered PNG as stored (metadata and marks
    kept) for ``png``, re-encoded from its pixels for JPEG and WebP."""
    if fmt == "png":
        return [d.png for d in delivered]
    from PIL import Image

    out = []
    for d in delivered:
        with Image.open(io.BytesIO(d.png)) as image:
            pixels = np.asarray(image.convert("RGB"))
        out.append(encode_image(pixels, fmt, compression))
    return out


class ServingOpenAIImages:
    """``POST /v1/images/generations``."""

    def __init__(self, state: AppState):
        self.state = state

    def default_model(self) -> str:
        """The model used when a request names none: the catalog's first entry."""
        return self.state.catalog.ids()[0]

    async def create(
        self,
        request: ImageGenerationRequest,
        tenant: Tenant,
        base_url: str,
        request_id: str | None = None,
    ) -> ImagesResponse:
        """Generate, store, charge, answer as base64 or as signed URLs under ``base_url``.

        ``output_compression`` applies to JPEG and WebP; PNG is the stored asset file.
        """
        state = self.state
        settings = state.settings
        spec = state.catalog.get(request.model or self.default_model())
        params = request.to_params(
            spec, settings.generation_defaults, max_prompt_chars=settings.max_prompt_chars
        )
        fmt = request.output_format or "png"
        _, delivered, _ = await generate_and_deliver(state, tenant, spec, params, request_id)
        encoded = await asyncio.to_thread(
            delivered_bytes, delivered, fmt, request.output_compression
        )
        if request.response_format == "url":
            file_ids = await asyncio.to_thread(
                lambda: [state.files.save(data, fmt) for data in encoded]
            )
            public = settings.public_url or base_url
            data = [
                ImageObject(
                    url=state.files.signed_url(public, fid),
                    revised_prompt=params.prompt,
                    asset_id=d.asset.id,
                )
                for fid, d in zip(file_ids, delivered, strict=True)
            ]
        else:
            data = [
                ImageObject(b64_json=b64(e), revised_prompt=params.prompt, asset_id=d.asset.id)
                for e, d in zip(encoded, delivered, strict=True)
            ]
        return ImagesResponse(
            created=int(time.time()),
            data=data,
            output_format=fmt,
            size=f"{params.width}x{params.height}",
        )
