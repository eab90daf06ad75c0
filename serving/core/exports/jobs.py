"""The ``upscale`` job: an upscale too big to answer in the request (``SYNC_MAX_PIXELS``).

Submitting (the ingress) reserves the ``upscale`` price and creates the queued job; the
work (``run_upscale_job``, on the job's worker: a Ray task under Serve, else a thread)
upscales the parent's original tile by tile, reporting ``step``/``total`` tiles as
progress (and stopping there when cancelled), stores the child asset and only then
captures the price. A failure or a cancel stores nothing and returns the credits
(``serving.core.jobs.runner.settle``).
"""

from __future__ import annotations

import logging
from typing import Any

from serving.core.exports.service import UpscalePlan, run_upscale
from serving.core.jobs.runner import JobContext
from serving.core.jobs.service import Job, Jobs, new_job_id
from serving.core.ledger import Ledger
from serving.core.objects import asset_object

logger = logging.getLogger(__name__)

KIND = "upscale"


def submit_upscale(
    ledger: Ledger, tenant_id: str, asset_id: str, plan: UpscalePlan, price: int
) -> Job:
    """Reserve ``price`` (``InsufficientCredits``) and create the queued job; the caller
    hands it to the runner. Nothing stays reserved if creating the job fails."""
    job_id = new_job_id()
    reservation = ledger.reserve(tenant_id, price, f"{KIND}:{asset_id}") if price else None
    params = {"asset_id": asset_id, "long_side": plan.long_side, "method": plan.method}
    try:
        return Jobs(ledger.engine).create(
            tenant_id,
            KIND,
            params,
            price=price,
            reservation_id=None if reservation is None else reservation.id,
            job_id=job_id,
        )
    except BaseException:
        if reservation is not None:
            ledger.release(reservation)
        raise


def run_upscale_job(ctx: JobContext) -> dict[str, Any]:
    """The job's work: upscale with progress per tile, store the child, capture."""
    from serving.core.assets.service import Assets
    from serving.core.assets.store import BlobStore
    from serving.core.licenses.service import Licenses
    from weights.catalog import ComponentKind
    from weights.tiny import ensure_tiny_components

    params = ctx.job.params
    ensure_tiny_components(ctx.catalog.components_of(ComponentKind.UPSCALER))  # no-op once built
    assets = Assets(ctx.ledger.engine, BlobStore(ctx.settings.assets_dir),
                    ctx.settings.c2pa_signer())  # fmt: skip
    licenses = Licenses(ctx.ledger, assets)
    parent = assets.get(ctx.job.tenant_id, params["asset_id"])
    plan = UpscalePlan(params["long_side"], params["method"], parent.width, parent.height)
    ctx.report(step=0, total=0, stage="loading")

    def progress(done: int, total: int) -> None:
        ctx.report(step=done, total=total, stage="upscaling")

    device = ctx.settings.device
    child = run_upscale(assets, licenses, ctx.catalog, ctx.job.tenant_id, parent.id, plan,
                        progress, device)  # fmt: skip
    try:
        ctx.check_cancelled()  # a cancel during the last tile or the store still counts
    except BaseException:
        assets.delete(ctx.job.tenant_id, child.id)
        raise
    # What was really charged: nothing if the hold was swept in a stall past its lease.
    charged = ctx.capture(ctx.job.price)
    logger.info("job %s stored upscale %s of %s", ctx.job.id, child.id, parent.id)
    return {
        "asset_id": child.id,
        "asset": asset_object(child),
        "credits_charged": charged,
    }
