"""The one paid path every image Kiln makes goes through, and its paid extracts too.

    started = time.perf_counter()  # where the use case begins: server_total counts from it
    ...
    order = paid.generation(params, Price(unit, params.n), Keep(kind, style, parent), started)
    result = await paid.images(tenant.id, order, request_id)   # ImageResult
    result.images[0].pixels, result.images[0].asset, result.credits_charged

The use cases (``serving.core.generations``, ``.edits``, ``.openai_images``,
``.agentic``; batch lines and asynchronous jobs call the same use cases) do steps 1-2 and
build an ``ImageOrder``; this module does the rest, the same way for all of them:

1. validate: the request's fields, its model, style, size, budget, tool;
2. rights: every input image through ``ImageInputs.load``, which asks
   ``serving.core.asset_rights.admit`` (403 for an unlicensed style reference).
   A request refused by 1-2 reserves nothing, charges nothing and stores nothing;
3. what only the model can refuse, asked where it runs (``ImageOrder.check``: a prompt
   its T5 or Qwen3 encoder would cut, 400) — still nothing reserved;
   a slot of the tenant's concurrency cap (429), the order's images held against the
   tenant's queued-images quota on its model (429; ``serving.core.limits`` says how the
   two combine), then the reservation of the whole
   price (``Price``: ``unit`` × ``units``; 402 before any work), its lease renewed while
   the order runs (``serving.core.credits.charging``);
4. the order's model step (``Render``) on the ``ModelClient`` port, whose calls wait
   their turn in the model's fair queue (``serving.core.scheduling``: the tenant and its
   weight travel in ``current_work``, set here around the order): one pipeline call
   (``PaidImages.generation``, with an edit's composite applied to each image) or the
   agent's rounds; it gives each image's pixels and asset row (``Made``);
5. finish and store: ``Assets.prepare`` marks each image (the visible mark on style
   previews, the invisible provenance mark), writes its metadata and stores its files;
6. in one ledger transaction, write the asset rows, capture what was delivered (one
   ledger entry per image, or the order's flat price once) and release the rest
   (``Charge.settle_blocking``; steps 5 and 6 run on one thread, off the event loop): an
   asset row exists only with its settlement. A failure, a partial batch or a
   cancellation releases what was not captured;
7. an ``ImageResult``: the delivered pixels and asset rows, typed; encoding them
   (base64, URLs, OpenAI's shape) is the adapter's business.

Image-to-prompt goes through steps 1-3 and 6 too (``PaidImages.text``): it is priced per
extract and makes words, not pixels, so it has no image to finish or store and its
result is the model step's text. Pins and agentic extraction are free and do not come here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from serving.core.assets.delivery import (
    Delivered,
    Keep,
    Made,
    generation_record,
    prepare_images,
)
from serving.core.assets.retention import RetentionSweeper
from serving.core.assets.service import Assets
from serving.core.credits.charging import Charge, reserve
from serving.core.ledger import Ledger
from serving.core.limits import ConcurrencyLimiter, TenantQueues
from serving.core.metrics import Metrics
from serving.core.model_client import ModelClient
from serving.core.order_progress import ORDER_PROGRESS
from serving.core.scheduling.admission import Admission
from serving.core.scheduling.context import Work, current_work

T = TypeVar("T")


@dataclass(frozen=True)
class Price:
    """What an order holds and charges: ``unit`` credits for each of ``units``.

    ``per_image``: one unit is captured per delivered image (generations, edits,
    variations: a partial batch charges only what it delivered); otherwise the order is
    one flat price, captured whole once it delivered (agentic, an extract)."""

    unit: int
    units: int
    per_image: bool = True

    def captured(self, delivered: int) -> int:
        """Units to capture for ``delivered`` images (or answers)."""
        if self.per_image:
            return delivered
        return self.units if delivered else 0


@dataclass(frozen=True)
class Rendering(Generic[T]):
    """What an order's model step made: the images to store, in order, the step's own
    timings (seconds) and what else it has to say (``detail``: None for a pipeline
    call, the agent's plan and trace for agentic)."""

    images: list[Made]
    timings: dict[str, float]
    detail: T


# The model step of an order: given the generation id its assets will carry.
Render = Callable[[str], Awaitable[Rendering[T]]]


@dataclass(frozen=True)
class ImageOrder(Generic[T]):
    """A validated image request, ready for the paid path: which model, at what price,
    and its model step. ``started`` (``time.perf_counter()``) is when its use case
    began: its ``server_total`` counts the checks and the reservation too.
    ``id_prefix`` starts the generation id (``gen``, ``agen``)."""

    model: str
    price: Price
    render: Render[T]
    started: float
    id_prefix: str = "gen"
    # Asked before anything is reserved: what only the model can refuse (its encoder's
    # token count); None where there is nothing to ask.
    check: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True)
class ImageResult(Generic[T]):
    """A delivered order: its generation id, model, the images (asset rows and pixels, in
    order), the credits captured, the timings (the model step's plus ``deliver`` and
    ``server_total``) and the model step's ``detail``."""

    id: str
    model: str
    images: list[Delivered]
    credits_charged: int
    timings: dict[str, float]
    detail: T


@dataclass(frozen=True)
class TextResult(Generic[T]):
    """A paid answer that is not an image (an extract): what the model step gave and the
    credits captured."""

    made: T
    credits_charged: int
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(kw_only=True, eq=False)
class PaidImages:
    """The paid path (see the module docstring), built once by ``build_core``."""

    ledger: Ledger
    limiter: ConcurrencyLimiter
    models: ModelClient
    assets: Assets
    retention: RetentionSweeper
    metrics: Metrics
    # The model client's fair queues (None for a test double of the port that has none).
    admission: Admission | None = field(init=False)
    queues: TenantQueues = field(init=False)

    def __post_init__(self) -> None:
        self.admission = getattr(self.models, "admission", None)
        if self.admission is not None:
            self.admission.metrics = self.metrics  # counted in the app's /metrics
        default_quota = getattr(self.admission, "default_max_queued_images", None)
        self.queues = TenantQueues(self.ledger.engine, default_quota)

    @asynccontextmanager
    async def _held(
        self, tenant_id: str, price: Price, request_id: str | None, model: str | None = None
    ) -> AsyncIterator[Charge]:
        """Steps 3 and 6: a slot, the order's images against the queue quota of
        ``model`` (None: not an image order), the reservation (renewed), the release of
        what the block did not capture, also on errors and cancellation."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.limiter.slot(tenant_id))
            if model is not None and self.admission is not None:
                await stack.enter_async_context(self.admission.held(model, price.units))
            yield await stack.enter_async_context(
                reserve(self.ledger, tenant_id, price.unit, price.units, request_id)
            )

    async def _work(self, tenant_id: str) -> Work | None:
        """Who the order's model calls are for, as the fair queue reads it."""
        if self.admission is None or not self.admission.enabled:
            return None
        own = self.queues.cached(tenant_id) or await asyncio.to_thread(self.queues.of, tenant_id)
        return Work(tenant_id, own.weight, own.max_queued_images)

    async def images(
        self, tenant_id: str, order: ImageOrder[T], request_id: str | None = None
    ) -> ImageResult[T]:
        """Run ``order`` for ``tenant_id`` through steps 3-7; ``request_id`` names its
        reservation in the ledger."""
        generation_id = f"{order.id_prefix}_{uuid.uuid4().hex}"
        if order.check is not None:
            await order.check()  # a refusal here holds and charges nothing
        token = current_work.set(await self._work(tenant_id))
        try:
            async with self._held(tenant_id, order.price, request_id, order.model) as charge:
                progress = ORDER_PROGRESS.get()
                if progress is not None:  # a job: its submitter answers 202 now
                    progress.held(order.price.unit * order.price.units)
                rendering = await order.render(generation_id)
                t0 = time.perf_counter()
                delivered = await asyncio.to_thread(
                    self._deliver, tenant_id, rendering.images, order.price, charge
                )
                timings = {**rendering.timings, "deliver": time.perf_counter() - t0}
        finally:
            current_work.reset(token)
        self.retention.maybe_start()
        timings["server_total"] = time.perf_counter() - order.started
        return ImageResult(
            generation_id, order.model, delivered, charge.charged, timings, rendering.detail
        )

    def _deliver(
        self, tenant_id: str, made: list[Made], price: Price, charge: Charge
    ) -> list[Delivered]:
        """Steps 5 and 6 on one thread: finish and store the files, then write the asset
        rows and settle their price in one transaction (blocking)."""
        prepared = prepare_images(self.assets, tenant_id, made)
        charge.settle_blocking(
            price.captured(len(prepared)), also=lambda conn: self.assets.insert(conn, prepared)
        )
        return [Delivered.of(p) for p in prepared]

    async def text(
        self,
        tenant_id: str,
        price: Price,
        request_id: str | None,
        run: Callable[[], Awaitable[T]],
    ) -> TextResult[T]:
        """A paid answer of words (image-to-prompt): steps 3, 4 (``run``) and 6, one
        unit captured once ``run`` answered."""
        async with self._held(tenant_id, price, request_id) as charge:
            made = await run()
            await charge.settle(price.captured(1))
        return TextResult(made, charge.charged)

    def generation(
        self,
        params: GenerationParams,
        price: Price,
        keep: Keep,
        started: float,
        finish: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> ImageOrder[None]:
        """The order of one pipeline call ``params`` on its model, its use case begun at
        ``started`` (``ImageOrder``): its images kept as ``keep`` says, each passed
        through ``finish`` first where given (an edit's composite over its input)."""

        async def render(generation_id: str) -> Rendering[None]:
            called = time.perf_counter()
            output = await self.generate(params)
            timings = {k: float(v) for k, v in output.timings.items()}
            timings["generate"] = time.perf_counter() - called
            images = list(output.images)
            if finish is not None:
                images = await asyncio.to_thread(lambda: [finish(image) for image in images])
            made = [
                Made(pixels, generation_record(params, pixels, seed, keep, generation_id))
                for pixels, seed in zip(images, output.seeds, strict=True)
            ]
            return Rendering(made, timings, None)

        # Prompts counted where the model runs (T5, Qwen3): refused before the reservation.
        counted = params.sequence_length is not None
        check = (lambda: self.models.check(params)) if counted else None
        return ImageOrder(params.model, price, render, started, check=check)

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        """Run ``params`` on its model (the ``ModelClient`` port) and count its images;
        an order run as a job hears its steps (``ORDER_PROGRESS``)."""
        progress = ORDER_PROGRESS.get()
        if progress is None:
            output = await self.models.generate(params)
        else:
            output = None
            async for item in self.models.generate_stream(params):
                if isinstance(item, GenerationOutput):
                    output = item
                else:
                    progress.step(item)
            if output is None:
                raise RuntimeError(f"the model stream of {params.model!r} gave no output")
        if len(output.images) != params.n:
            raise RuntimeError(f"engine returned {len(output.images)} images for n={params.n}")
        self.metrics.images.labels(params.model).inc(len(output.images))
        return output
