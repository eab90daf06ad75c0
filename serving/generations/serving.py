"""Native generation: resolve, run on the model's deployment, encode, answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from serving.auth import Tenant
from serving.credits.charging import reserve, unit_price
from serving.generations.protocol import GeneratedImage, GenerationRequest, GenerationResponse
from serving.imaging import b64, encode_images
from serving.state import AppState


@dataclass
class Generated:
    """A finished generation: the pipeline's output and the ingress's own timings."""

    output: GenerationOutput
    started: float
    timings: dict[str, float]


async def generate(state: AppState, params: GenerationParams) -> Generated:
    """Run ``params`` on its model and count the delivered images."""
    started = time.perf_counter()
    output = await state.models.generate(params)
    if len(output.images) != params.n:
        raise RuntimeError(f"engine returned {len(output.images)} images for n={params.n}")
    state.metrics.images.labels(params.model).inc(len(output.images))
    timings = {k: float(v) for k, v in output.timings.items()}
    timings["generate"] = time.perf_counter() - started
    return Generated(output, started, timings)


class ServingGenerations:
    """``POST /v1/generations`` against the model handles."""

    def __init__(self, state: AppState):
        self.state = state

    async def create(
        self, request: GenerationRequest, tenant: Tenant, request_id: str | None = None
    ) -> GenerationResponse:
        """Generate ``request.n`` images, charge them, answer them as base64 PNG."""
        state = self.state
        settings = state.settings
        spec = state.catalog.get(request.model)
        params = request.to_params(
            spec, settings.generation_defaults, max_prompt_chars=settings.max_prompt_chars
        )
        unit = unit_price(spec, params.resolution)
        with state.limiter.slot(tenant.id):
            async with reserve(state.ledger, tenant.id, unit, params.n, request_id) as charge:
                done = await generate(state, params)
                t0 = time.perf_counter()
                pngs = await asyncio.to_thread(encode_images, done.output.images, "png")
                done.timings["encode"] = time.perf_counter() - t0
                await charge.capture(len(pngs))
        done.timings["server_total"] = time.perf_counter() - done.started
        data = [
            GeneratedImage(
                id=f"img_{uuid.uuid4().hex}",
                b64_json=b64(png),
                seed=seed,
                width=params.width,
                height=params.height,
            )
            for png, seed in zip(pngs, done.output.seeds, strict=True)
        ]
        return GenerationResponse(
            id=f"gen_{uuid.uuid4().hex}",
            created=int(time.time()),
            model=params.model,
            data=data,
            credits_charged=charge.charged,
            timings=done.timings,
        )
