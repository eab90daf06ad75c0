"""OpenAI-compatible image generation on the same model handles as the native route."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from pipelines.params import ParamError
from serving.core.app import KilnCore
from serving.core.assets.delivery import Delivered
from serving.core.generations.styling import choose_style, find_style
from serving.core.imaging import b64, encode_image
from serving.http.auth import Tenant
from serving.http.generations.serving import generate_and_deliver
from serving.http.openai_images.protocol import ImageGenerationRequest, ImageObject, ImagesResponse
from styles.record import is_style_id


def delivered_bytes(delivered: list[Delivered], fmt: str, compression: int | None) -> list[bytes]:
    """The images in the asked format: the delivered PNG as stored (metadata and marks
    kept) for ``png``, encoded from the same pixels for JPEG and WebP."""
    if fmt == "png":
        return [d.png for d in delivered]
    return [encode_image(d.pixels, fmt, compression) for d in delivered]


class ServingOpenAIImages:
    """``POST /v1/images/generations``."""

    def __init__(self, state: KilnCore):
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
        model = request.model or self.default_model()
        style = None
        if model not in state.catalog and is_style_id(model):
            # ``model`` names a style: it runs on the style's base model.
            record = await find_style(state, tenant, model)
            spec = state.catalog.get(record.base_model)
            style = choose_style(state, record, request.style_strength, spec)
        else:
            spec = state.catalog.get(model)
            if request.style_strength is not None:
                raise ParamError("style_strength", "style_strength needs model to name a style")
        params = request.to_params(
            spec,
            settings.generation_defaults,
            max_prompt_chars=settings.max_prompt_chars,
            style=style.ref if style else None,
            prompt=style.prompt(request.prompt) if style else None,
        )
        _, delivered, _ = await generate_and_deliver(state, tenant, spec, params, request_id, style)
        return await images_response(
            state,
            delivered,
            ResponseOptions(
                request.response_format or "b64_json",
                request.output_format or "png",
                request.output_compression,
                base_url,
            ),
            params.prompt,
        )


@dataclass(frozen=True)
class ResponseOptions:
    """How an OpenAI images response carries its images."""

    response_format: str  # b64_json | url
    output_format: str  # png | jpeg | webp
    output_compression: int | None
    base_url: str


async def images_response(
    state: KilnCore, delivered: list[Delivered], options: ResponseOptions, prompt: str
) -> ImagesResponse:
    """OpenAI's images response for delivered assets: base64, or signed URLs under the
    server's public URL (or ``options.base_url``); ``output_compression`` applies to JPEG
    and WebP, PNG is the stored asset file."""
    fmt = options.output_format
    encoded = await asyncio.to_thread(delivered_bytes, delivered, fmt, options.output_compression)
    if options.response_format == "url":
        file_ids = await asyncio.to_thread(
            lambda: [state.files.save(data, fmt) for data in encoded]
        )
        public = state.settings.public_url or options.base_url
        data = [
            ImageObject(
                url=state.files.signed_url(public, fid), revised_prompt=prompt, asset_id=d.asset.id
            )
            for fid, d in zip(file_ids, delivered, strict=True)
        ]
    else:
        data = [
            ImageObject(b64_json=b64(e), revised_prompt=prompt, asset_id=d.asset.id)
            for e, d in zip(encoded, delivered, strict=True)
        ]
    first = delivered[0].asset
    return ImagesResponse(
        created=int(time.time()), data=data, output_format=fmt, size=f"{first.width}x{first.height}"
    )
