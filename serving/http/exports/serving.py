"""The export routes' work: checks in order (404, 403, 400), credits, then the blocking
work off the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from serving.core.app import KilnCore
from serving.core.credits.charging import reserve
from serving.core.exports import service
from serving.core.exports.jobs import submit_upscale
from serving.core.exports.trace_slots import TRACES
from serving.core.jobs.service import Job
from serving.http.assets.protocol import AssetObject
from serving.http.auth import Tenant
from serving.http.exports.protocol import ExportResponse, UpscaleRequest


class ServingExports:
    """``/v1/assets/{id}/upscale``, ``…/remove-background``, ``…/download``."""

    def __init__(self, state: KilnCore) -> None:
        self.state = state
        self.device = state.settings.device  # resolved where the model loads

    async def _exportable(self, tenant: Tenant, asset_id: str) -> Any:
        asset = await asyncio.to_thread(self.state.assets.get, tenant.id, asset_id)
        return service.check_exportable(asset)

    async def upscale(
        self, tenant: Tenant, asset_id: str, request: UpscaleRequest
    ) -> ExportResponse | Job:
        """The child asset, or the submitted job when the result is big (202)."""
        state = self.state
        asset = await self._exportable(tenant, asset_id)
        plan = service.plan_upscale(
            asset, request.long_side, request.scale, request.method, state.catalog
        )
        price = state.catalog.price_of("upscale")
        if plan.pixels > service.SYNC_MAX_PIXELS:
            job = await asyncio.to_thread(
                submit_upscale, state.ledger, tenant.id, asset.id, plan, price
            )
            state.job_runner.submit(job)
            return job
        async with reserve(state.ledger, tenant.id, price, 1, f"upscale:{asset.id}") as charge:
            child = await asyncio.to_thread(
                service.run_upscale, state.assets, state.licenses, state.catalog, tenant.id,
                asset.id, plan, None, self.device,
            )  # fmt: skip
            charged = await charge.capture(1)
        return ExportResponse(
            operation="upscale", asset=AssetObject.of(child), credits_charged=charged
        )

    async def remove_background(self, tenant: Tenant, asset_id: str) -> ExportResponse:
        state = self.state
        asset = await self._exportable(tenant, asset_id)
        price = state.catalog.price_of("remove_background")
        reference = f"remove_background:{asset.id}"
        async with reserve(state.ledger, tenant.id, price, 1, reference) as charge:
            child = await asyncio.to_thread(
                service.run_remove_background, state.assets, state.licenses, state.catalog,
                tenant.id, asset.id, self.device,
            )  # fmt: skip
            charged = await charge.capture(1)
        return ExportResponse(
            operation="remove_background", asset=AssetObject.of(child), credits_charged=charged
        )

    async def download(
        self, tenant: Tenant, asset_id: str, fmt: str, long_side: int | None, method: str,
        vector: Any,
    ) -> tuple[bytes, str, int]:  # fmt: skip
        """The file, its media type and the credits charged."""
        state = self.state
        asset = await self._exportable(tenant, asset_id)
        plan = service.plan_download(asset, fmt, long_side, method, state.catalog)
        if vector is not None:
            vector.checked()
        total = sum(state.catalog.price_of(op) for op in plan.operations)
        args = (state.assets, state.catalog, tenant.id, asset.id, plan, vector, self.device)
        # 429 before credits are reserved: a full house charges nothing.
        slot = TRACES.take(state.settings.svg_max_concurrent) if fmt == "svg" else None
        try:
            async with reserve(state.ledger, tenant.id, total, 1, f"download:{asset.id}") as charge:
                if slot is None:
                    data = await asyncio.to_thread(service.render_download, *args)
                else:
                    data = await asyncio.to_thread(slot.run, service.render_download, *args)
                charged = await charge.capture(1)
        finally:
            if slot is not None:
                slot.abandon()  # a no-op once the trace ran: its thread gave the slot back
        return data, service.MEDIA_TYPES[fmt], charged
