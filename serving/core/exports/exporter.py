"""Exports, the use case: ``POST /v1/assets/{id}/upscale``, ``…/remove-background`` and
``GET …/download``, built once by ``build_core``.

Every export checks in the same order, so a refused request charges and stores nothing
(``serving.core.exports.service``): the asset is the caller's (404), exports of it are
allowed (403 ``license_required``), the parameters are valid (400). Only then are
credits reserved; the blocking work runs off the event loop and the price is captured
once it is done (a failure releases it).

Where the work runs: an upscale whose result is over ``SYNC_MAX_PIXELS`` becomes an
``upscale`` job (the caller answers 202 with it), everything else answers in the
request. A download is a rendition, never stored; an SVG download takes one of the
process's trace slots before credits are reserved (429 ``svg_concurrency_limit``, nothing
charged, when all are taken).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pipelines.vectorize import VectorizeParams
from serving.core.assets.service import Asset, Assets
from serving.core.credits.charging import reserve
from serving.core.exports import service
from serving.core.exports.jobs import submit_upscale
from serving.core.exports.trace_slots import TRACES
from serving.core.jobs.runner import JobRunner
from serving.core.jobs.service import Job
from serving.core.ledger import Ledger
from serving.core.licenses.service import Licenses
from serving.core.settings import Settings
from weights.catalog import Catalog


@dataclass(frozen=True)
class UpscaleOrder:
    """An upscale: exactly one of ``long_side`` (px) and ``scale`` (× the long side);
    ``method`` ``model`` (the installed upscaler) or ``lanczos``."""

    long_side: int | None = None
    scale: float | None = None
    method: str = "model"


@dataclass(frozen=True)
class DownloadOrder:
    """A download: ``format`` (png, jpeg, webp, svg), at ``long_side`` or the asset's
    own size (``method``: how to upscale past it), ``vector``: an SVG's tracing."""

    format: str = "png"
    long_side: int | None = None
    method: str = "model"
    vector: VectorizeParams | None = None


@dataclass(frozen=True)
class Export:
    """A finished export: the derived asset (its ``parent_id`` is the source) and the
    credits this call charged."""

    operation: str
    asset: Asset
    credits_charged: int


@dataclass(frozen=True)
class Download:
    """A rendition's file, its media type and the credits it cost."""

    data: bytes
    media_type: str
    credits_charged: int


@dataclass(kw_only=True, eq=False)
class Exports:
    """Upscale, background removal and downloads of the caller's assets."""

    settings: Settings
    catalog: Catalog
    ledger: Ledger
    assets: Assets
    licenses: Licenses
    job_runner: JobRunner

    @property
    def device(self) -> str:
        """Where the export models run (resolved where the model loads)."""
        return self.settings.device

    async def upscale(self, tenant_id: str, asset_id: str, order: UpscaleOrder) -> Export | Job:
        """The child asset, or the submitted ``upscale`` job when the result is big."""
        asset = await self._exportable(tenant_id, asset_id)
        plan = service.plan_upscale(asset, order.long_side, order.scale, order.method, self.catalog)
        price = self.catalog.price_of("upscale")
        if plan.pixels > service.SYNC_MAX_PIXELS:
            job = await asyncio.to_thread(
                submit_upscale, self.ledger, tenant_id, asset.id, plan, price
            )
            self.job_runner.submit(job)
            return job
        async with reserve(self.ledger, tenant_id, price, 1, f"upscale:{asset.id}") as charge:
            child = await asyncio.to_thread(
                service.run_upscale, self.assets, self.licenses, self.catalog, tenant_id,
                asset.id, plan, None, self.device,
            )  # fmt: skip
            charged = await charge.settle(1)
        return Export("upscale", child, charged)

    async def remove_background(self, tenant_id: str, asset_id: str) -> Export:
        """The cut-out (RGBA, transparent background) as the asset's child."""
        asset = await self._exportable(tenant_id, asset_id)
        price = self.catalog.price_of("remove_background")
        reference = f"remove_background:{asset.id}"
        async with reserve(self.ledger, tenant_id, price, 1, reference) as charge:
            child = await asyncio.to_thread(
                service.run_remove_background, self.assets, self.licenses, self.catalog,
                tenant_id, asset.id, self.device,
            )  # fmt: skip
            charged = await charge.settle(1)
        return Export("remove_background", child, charged)

    async def download(self, tenant_id: str, asset_id: str, order: DownloadOrder) -> Download:
        """The asset as a file in ``order``'s format and size; nothing is stored."""
        fmt, vector = order.format, order.vector
        asset = await self._exportable(tenant_id, asset_id)
        plan = service.plan_download(asset, fmt, order.long_side, order.method, self.catalog)
        if vector is not None:
            vector.checked()
        total = sum(self.catalog.price_of(op) for op in plan.operations)
        args = (self.assets, self.catalog, tenant_id, asset.id, plan, vector, self.device)
        # 429 before credits are reserved: a full house charges nothing.
        slot = TRACES.take(self.settings.svg_max_concurrent) if fmt == "svg" else None
        try:
            async with reserve(self.ledger, tenant_id, total, 1, f"download:{asset.id}") as charge:
                if slot is None:
                    data = await asyncio.to_thread(service.render_download, *args)
                else:
                    data = await asyncio.to_thread(slot.run, service.render_download, *args)
                charged = await charge.settle(1)
        finally:
            if slot is not None:
                slot.abandon()  # a no-op once the trace ran: its thread gave the slot back
        return Download(data, service.MEDIA_TYPES[fmt], charged)

    async def _exportable(self, tenant_id: str, asset_id: str) -> Asset:
        """The caller's asset (404 otherwise), if exports of it are allowed (403)."""
        asset = await asyncio.to_thread(self.assets.get, tenant_id, asset_id)
        return service.check_exportable(asset)
