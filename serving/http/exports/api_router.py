"""HTTP routes of exports: upscale, background removal, download in a format and size.

All three are license-gated the same way: free for base and agentic images, 403
``license_required`` for an artist- or private-style image until it is licensed. A route
converts the request once into the core's order, calls ``core.exports``
(``serving.core.exports.exporter``) and encodes its answer: the asset object, a big
upscale's job (202), a download's file and headers.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from pipelines.vectorize import VectorizeParams
from serving.core.exports.exporter import DownloadOrder, Export, UpscaleOrder
from serving.http.assets.protocol import AssetObject
from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.exports.protocol import ExportResponse, RemoveBackgroundRequest, UpscaleRequest
from serving.http.jobs.protocol import JobObject

router = APIRouter(tags=["exports"])

FILES = {200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {},
                           "image/svg+xml": {}}}}  # fmt: skip


@router.post(
    "/v1/assets/{asset_id}/upscale",
    response_model=ExportResponse,
    responses={202: {"model": JobObject, "description": "a big upscale, as a job"}},
)
async def upscale_asset(
    asset_id: str, body: UpscaleRequest, core: CoreDep, tenant: TenantDep
) -> ExportResponse | JSONResponse:
    """Upscale to ``long_side`` (1-7680) or ``scale`` x; a new asset derived from this one.

    Results up to 2048x2048 px answer here (200); bigger ones start an ``upscale`` job
    (202 and the job; follow ``/v1/jobs/{id}``, its result names the new asset). Price:
    the catalog's ``upscale``, charged when the asset is stored."""
    order = UpscaleOrder(long_side=body.long_side, scale=body.scale, method=body.method)
    done = await core.exports.upscale(tenant.id, asset_id, order)
    if isinstance(done, Export):
        return _response(done)
    body_json = JobObject.of(done).model_dump(mode="json")
    return JSONResponse(body_json, status_code=202, headers={"location": f"/v1/jobs/{done.id}"})


@router.post("/v1/assets/{asset_id}/remove-background", response_model=ExportResponse)
async def remove_background(
    asset_id: str, core: CoreDep, tenant: TenantDep, body: RemoveBackgroundRequest | None = None
) -> ExportResponse:
    """Cut the subject out: a new RGBA asset whose background is transparent. Price: the
    catalog's ``remove_background``."""
    return _response(await core.exports.remove_background(tenant.id, asset_id))


@router.get("/v1/assets/{asset_id}/download", response_class=Response, responses=FILES)
async def download_asset(
    asset_id: str,
    core: CoreDep,
    tenant: TenantDep,
    format: str = Query("png", description="png | jpeg | webp | svg"),
    long_side: int | None = Query(None, description="1-7680; above the original: upscaled"),
    method: str = Query("model", description="how to upscale: model | lanczos"),
    colormode: str = Query("color", description="svg: color | binary"),
    color_precision: int = Query(6, description="svg: bits per colour channel, 1-8"),
    filter_speckle: int = Query(4, description="svg: drop patches under this many px"),
    mode: str = Query("spline", description="svg: spline | polygon | none"),
) -> Response:
    """The original as a file: PNG (as stored), JPEG, WebP or SVG (traced), at its own
    size or at ``long_side``. Shrinking and converting are free; a ``long_side`` above the
    original's is an upscale (``upscale`` price), SVG costs ``vectorize``. Nothing is
    stored: to keep an upscale as an asset, POST ``…/upscale``.

    SVG is traced at most 2048 px on the long side (``long_side`` sets the drawing's
    size, through its ``viewBox``), and a server process traces ``KILN_SVG_MAX_CONCURRENT``
    at once: past that, 429 ``svg_concurrency_limit`` with ``retry-after``, nothing
    charged."""
    vector = (
        VectorizeParams(colormode, color_precision, filter_speckle, mode)
        if format == "svg" else None
    )  # fmt: skip
    order = DownloadOrder(format=format, long_side=long_side, method=method, vector=vector)
    done = await core.exports.download(tenant.id, asset_id, order)
    extension = "jpg" if format == "jpeg" else format
    headers = {
        "cache-control": "private",
        "content-disposition": f'attachment; filename="{asset_id}.{extension}"',
        "x-credits-charged": str(done.credits_charged),
    }
    return Response(done.data, media_type=done.media_type, headers=headers)


def _response(done: Export) -> ExportResponse:
    """The wire answer of a finished export."""
    return ExportResponse(
        operation=done.operation,
        asset=AssetObject.of(done.asset),
        credits_charged=done.credits_charged,
    )
