"""OpenAI-compatible image generation on the same model handles as the native route."""

from __future__ import annotations

import asyncio
import time

from serving.auth import Tenant
from serving.credits.charging import reserve, unit_price
from serving.generations.serving import generate
from serving.imaging import b64, encode_images
from serving.openai_images.protocol import ImageGenerationRequest, ImageObject, ImagesResponse
from serving.state import AppState


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
        """Generate, charge, answer as base64 or as signed URLs under ``base_url``."""
        state = self.state
        settings = state.settings
        spec = state.catalog.get(request.model or self.default_model())
        params = request.to_params(
            spec, settings.generation_defaults, max_prompt_chars=settings.max_prompt_chars
        )
        fmt = request.output_format or "png"
        unit = unit_price(spec, params.resolution)
        file_ids: list[str] = []
        with state.limiter.slot(tenant.id):
            async with reserve(state.ledger, tenant.id, unit, params.n, request_id) as charge:
                done = await generate(state, params)
                encoded = await asyncio.to_thread(
                    encode_images, done.output.images, fmt, request.output_compression
                )
                if request.response_format == "url":
                    file_ids = await asyncio.to_thread(
                        lambda: [state.files.save(data, fmt) for data in encoded]
                    )
                await charge.capture(len(encoded))
        if request.response_format == "url":
            public = settings.public_url or base_url
            data = [
                ImageObject(
                    url=self.state.files.signed_url(public, fid), revised_prompt=params.prompt
                )
                for fid in file_ids
            ]
        else:
            data = [ImageObject(b64_json=b64(d), revised_prompt=params.prompt) for d in encoded]
        return ImagesResponse(
            created=int(time.time()),
            data=data,
            output_format=fmt,
            size=f"{params.width}x{params.height}",
        )
