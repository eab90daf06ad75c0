"""Exports of an asset, blocking work on the caller's thread (routes call it off the loop).

Rules (DESIGN.md §1, §5), checked in this order so a refused request charges and stores
nothing: the asset is the caller's (``UnknownAsset``, 404), exports of it are allowed
(``LicenseRequired``, 403, for an artist- or private-style image not licensed yet), the
parameters are valid (``ParamError``, 400). Only then are credits reserved.

A derived asset keeps its parent's kind, model, style, prompt and seed, names its parent
(``parent_id``) and records the operation in ``params``; a style-kind child is itself
watermarked and license-gated. Decision: a child of a *licensed* parent is licensed too,
at no charge (a license row with price 0, ``licenses.grant_derived``): the studio bought
the image's rights, and its upscale or cut-out is that image, not a new one to buy.

Decision: where the work runs. Background removal (a 320 px model pass) and upscales up
to ``SYNC_MAX_PIXELS`` of result answer synchronously; bigger upscales become an
``upscale`` job (202, progress per tile over SSE), because finishing an 8K image alone
(invisible mark, PNG) takes many seconds on a CPU. Downloads are renditions, never
stored: format conversion and shrinking are free, a ``long_side`` above the original's
is an upscale (charged ``upscale``), SVG is charged ``vectorize``. An SVG is traced from the
asset file decoded straight to the working resolution (``png_strips``), so its memory
does not follow the asset's pixels; the routes cap traces per process (``trace_slots``).

Models are loaded once per process on first use and kept (``_loaded``).
"""

from __future__ import annotations

import io
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.params import ParamError
from pipelines.provenance import encode_png_pixels
from serving.core.assets.service import Asset, Assets, ImageRecord, LicenseRequired
from weights.catalog import Catalog, ComponentKind

logger = logging.getLogger(__name__)

# Upscales whose result has more pixels than this run as a job (2048 x 2048).
SYNC_MAX_PIXELS = 2048 * 2048
DOWNLOAD_FORMATS = ("png", "jpeg", "webp", "svg")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp",
               "svg": "image/svg+xml"}  # fmt: skip

_lock = threading.Lock()
_loaded: dict[tuple[str, Path], Any] = {}


def check_exportable(asset: Asset) -> Asset:
    """``LicenseRequired`` (403) for a style-kind asset without a license."""
    if asset.license_state == "required":
        raise LicenseRequired(asset.id)
    return asset


def export_device(setting: str = "auto") -> str:
    """Where export models run: ``KILN_DEVICE``, except that a process without CUDA (the
    ingress of a GPU server, a CPU-only job task) runs them on its CPU."""
    if setting == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return setting if setting.startswith("cuda") else "cuda"


def upscaler_of(catalog: Catalog, device: str = "auto") -> Any:
    """The catalog's first upscaler, loaded once; None when none is installed."""
    from pipelines.upscale import Upscaler

    spec = catalog.first_component(ComponentKind.UPSCALER)
    if spec is None:
        return None
    return _load(
        ("upscaler", spec.source), lambda: Upscaler.load(spec.source, export_device(device))
    )


def remover_of(catalog: Catalog, device: str = "auto") -> Any:
    """The catalog's first background-removal model, loaded once; ParamError if none."""
    from pipelines.background_removal import BackgroundRemover

    spec = catalog.first_component(ComponentKind.BACKGROUND_REMOVAL)
    if spec is None:
        raise ParamError(
            "asset_id", "no background removal model is installed (a [components] entry "
            'of kind "background_removal")',
        )  # fmt: skip
    return _load(
        ("remover", spec.source),
        lambda: BackgroundRemover.load(spec.source, spec.options, export_device(device)),
    )


def _load(key: tuple[str, Path], load: Any) -> Any:
    with _lock:
        if key not in _loaded:
            _loaded[key] = load()
        return _loaded[key]


@dataclass(frozen=True)
class UpscalePlan:
    """A checked upscale: the target long side and the method."""

    long_side: int
    method: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def plan_upscale(
    asset: Asset, long_side: int | None, scale: float | None, method: str, catalog: Catalog
) -> UpscalePlan:
    """Validate an upscale of ``asset`` (``ParamError`` naming the field)."""
    from pipelines.upscale import check_long_side, target_size

    if (long_side is None) == (scale is None):
        raise ParamError("long_side", "give exactly one of long_side and scale")
    if scale is not None:
        if not 0 < scale < math.inf:  # NaN fails too; infinity would not round to a size
            raise ParamError("scale", "scale must be a finite number above 0")
        long_side = round(max(asset.width, asset.height) * scale)
        check_long_side(long_side, "scale")
    check_long_side(long_side)
    check_method(method, catalog)
    width, height = target_size(asset.width, asset.height, long_side)
    return UpscalePlan(long_side, method, width, height)


def check_method(method: str, catalog: Catalog) -> str:
    """``method`` if known and usable here; ``model`` needs an installed upscaler."""
    from pipelines.upscale import METHODS

    if method not in METHODS:
        raise ParamError("method", f"method must be one of {', '.join(METHODS)}")
    if method == "model" and catalog.first_component(ComponentKind.UPSCALER) is None:
        raise ParamError(
            "method", 'no upscaler is installed; ask for method "lanczos" to resample instead'
        )
    return method


def decode_asset(data: bytes) -> np.ndarray:
    """An asset file (our own PNG) as uint8 HxWx3, or HxWx4 where it has alpha."""
    with Image.open(io.BytesIO(data)) as image:
        mode = "RGBA" if "A" in image.getbands() else "RGB"
        return np.asarray(image.convert(mode))


def derived_record(parent: Asset, pixels: np.ndarray, params: dict[str, Any]) -> ImageRecord:
    """The record of an image derived from ``parent``: its kind, origin and provider terms
    (those recorded when the parent was made), new size."""
    return ImageRecord(
        kind=parent.kind,
        model=parent.model,
        prompt=parent.prompt,
        negative_prompt=parent.negative_prompt,
        seed=parent.seed,
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        params=params,
        style=parent.style,
        parent_id=parent.id,
        terms=parent.terms,
    )


def store_derived(
    assets: Assets, licenses: Any, tenant_id: str, parent: Asset, pixels: np.ndarray,
    params: dict[str, Any],
) -> Asset:  # fmt: skip
    """Store ``pixels`` as ``parent``'s child; licensed (free) when the parent is."""
    child, _ = assets.create(tenant_id, derived_record(parent, pixels, params), pixels)
    if parent.license_state == "licensed":
        licenses.grant_derived(tenant_id, child.id, parent.id)
        child = assets.get(tenant_id, child.id)
    return child


def run_upscale(
    assets: Assets, licenses: Any, catalog: Catalog, tenant_id: str, asset_id: str,
    plan: UpscalePlan, progress: Any = None, device: str = "auto",
) -> Asset:  # fmt: skip
    """Upscale the asset's original and store the result as its child. Blocking."""
    from pipelines.upscale import UpscaleParams, upscale

    parent, data = assets.source(tenant_id, asset_id)
    upscaler = upscaler_of(catalog, device) if plan.method == "model" else None
    pixels = upscale(
        decode_asset(data), UpscaleParams(plan.long_side, plan.method), upscaler, progress
    )
    params = {"operation": "upscale", "long_side": plan.long_side, "method": plan.method}
    if upscaler is not None:
        params["upscaler"] = catalog.first_component(ComponentKind.UPSCALER).id
    return store_derived(assets, licenses, tenant_id, parent, pixels, params)


def run_remove_background(
    assets: Assets, licenses: Any, catalog: Catalog, tenant_id: str, asset_id: str,
    device: str = "auto",
) -> Asset:  # fmt: skip
    """Cut the asset's subject out (RGBA) and store it as its child. Blocking."""
    from pipelines.background_removal import remove_background

    parent, data = assets.source(tenant_id, asset_id)
    remover = remover_of(catalog, device)
    pixels = remove_background(decode_asset(data), remover)
    model = catalog.first_component(ComponentKind.BACKGROUND_REMOVAL).id
    params = {"operation": "remove_background", "segmenter": model}
    return store_derived(assets, licenses, tenant_id, parent, pixels, params)


@dataclass(frozen=True)
class DownloadPlan:
    """A checked download: format, size, and what it costs (operations to charge)."""

    format: str
    long_side: int | None
    method: str
    operations: tuple[str, ...]


def plan_download(
    asset: Asset, fmt: str, long_side: int | None, method: str, catalog: Catalog
) -> DownloadPlan:
    """Validate a download (``ParamError``); a larger raster is an upscale, SVG is a
    vectorise (its ``long_side`` only sizes the drawing)."""
    from pipelines.upscale import check_long_side

    if fmt not in DOWNLOAD_FORMATS:
        raise ParamError("format", f"format must be one of {', '.join(DOWNLOAD_FORMATS)}")
    operations = []
    if long_side is not None:
        check_long_side(long_side)
        if fmt != "svg" and long_side > max(asset.width, asset.height):
            check_method(method, catalog)
            operations.append("upscale")
    if fmt == "svg":
        operations.append("vectorize")
    return DownloadPlan(fmt, long_side, method, tuple(operations))


def render_download(
    assets: Assets, catalog: Catalog, tenant_id: str, asset_id: str, plan: DownloadPlan,
    vector: Any = None, device: str = "auto",
) -> bytes:  # fmt: skip
    """The file of a download. Blocking."""
    from pipelines.upscale import UpscaleParams, resample, target_size, upscale

    _, data = assets.original(tenant_id, asset_id)
    if plan.long_side is None and plan.format == "png":
        return data  # the original file itself, metadata and marks included
    if plan.format == "svg":
        return render_svg(data, plan.long_side, vector)
    pixels = decode_asset(data)
    height, width = pixels.shape[:2]
    if plan.long_side is not None and plan.long_side > max(width, height):
        upscaler = upscaler_of(catalog, device) if plan.method == "model" else None
        pixels = upscale(pixels, UpscaleParams(plan.long_side, plan.method), upscaler)
    elif plan.long_side is not None:
        pixels = resample(pixels, target_size(width, height, plan.long_side))
    return encode(pixels, plan.format)


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    """PNG / WebP keep alpha; JPEG has none, so a cut-out is flattened on white. PNG is
    Kiln's own writer (``pipelines.provenance.encode_png``: one vectorised filter, ISA-L's
    deflate), 12x Pillow's at 1024 px (benchmarks/delivery_cost.py), which an 8K export
    multiplies by 33."""
    if fmt == "png":
        return encode_png_pixels(np.ascontiguousarray(pixels, dtype=np.uint8), {})
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if fmt == "jpeg" and image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    buf = io.BytesIO()
    options = {"jpeg": {"quality": 90}, "webp": {"quality": 90}}
    image.save(buf, format=fmt.upper(), **options[fmt])
    return buf.getvalue()


def render_svg(data: bytes, long_side: int | None, vector: Any = None) -> bytes:
    """The SVG of an asset file: traced at the working resolution (``pipelines.vectorize``,
    at most 2048 px, decoded straight to it), drawn at ``long_side`` or the asset's own
    size. Memory does not grow with the asset's pixels beyond its file bytes."""
    from pipelines.upscale import target_size
    from pipelines.vectorize import VectorizeParams, vectorize, work_factor
    from serving.core.exports.png_strips import decode_reduced, png_size

    width, height = png_size(data)
    pixels = decode_reduced(data, work_factor(width, height))
    size = target_size(width, height, long_side) if long_side is not None else None
    return vectorize(pixels, vector or VectorizeParams(), size or (width, height)).encode()
