"""Delivering made images: each becomes an asset (finished: marks and metadata; stored;
recorded) and the pixels and PNG bytes the answer carries (preview for style kinds,
original otherwise).

    made = [Made(pixels, generation_record(params, pixels, seed, keep, generation_id))]
    prepared = prepare_images(assets, tenant_id, made)    # blocking: files stored
    ...                                                   # rows: Assets.insert, in the
    delivered = [Delivered.of(p) for p in prepared]       # settlement's transaction

An order's images are finished side by side (``prepare_images``): the invisible mark,
the PNG encode, the hash and the write spend most of their time in numpy, OpenCV, zlib,
hashlib and file I/O, which release the GIL, so four 1024 px images take about half the
time of one after another on 2 cores (benchmarks/delivery_cost.py). One pool per process
(``DELIVERY_THREADS``: the cores, at least 2, at most 8) serves every order, so orders
delivering at once share its threads rather than each adding its own; a lone image is
finished on the caller's thread, with no hop. The assets' ``created`` times keep the
order's order (``_stamp_in_order``), as when they were finished one after another.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from pipelines.params import GenerationParams
from serving.core.assets.service import Asset, Assets, ImageRecord, PreparedAsset
from weights.catalog import ProviderTerms


@dataclass(frozen=True)
class Made:
    """One image a model step made, before it is finished and stored: its pixels and the
    asset row it will be stored under."""

    pixels: np.ndarray  # uint8 HxWx3
    record: ImageRecord


@dataclass(frozen=True)
class Delivered:
    """One delivered image: its asset, the PNG bytes handed out now and their pixels."""

    asset: Asset
    png: bytes
    pixels: Any  # uint8 HxWx3 (x4 with alpha) of ``png``, to re-encode without a decode

    @classmethod
    def of(cls, prepared: PreparedAsset) -> Delivered:
        finished = prepared.finished
        return cls(prepared.asset, finished.delivered, finished.delivered_pixels)


@dataclass(frozen=True)
class Keep:
    """How a generation's images are kept: their asset kind (the style's, the model's or
    the one an input's rights impose), the style, the asset they derive from and the
    provider terms of the model that makes them (its catalog entry's, required: every
    asset records them)."""

    kind: str
    style: str | None = None
    parent_id: str | None = None
    terms: ProviderTerms = field(kw_only=True)


def generation_record(
    params: GenerationParams, pixels: np.ndarray, seed: int, keep: Keep, generation_id: str
) -> ImageRecord:
    """The asset row of one image of a pipeline call ``params``; its size is the image's
    own (an edit's images come back at its input's size, not the call's work size)."""
    settings: dict[str, Any] = {
        "steps": params.steps,
        "guidance": params.guidance,
        "scheduler": params.scheduler,
        "resolution": params.resolution,
        "task": params.task.name,
        **params.task.recorded(),
    }
    return ImageRecord(
        kind=keep.kind,
        model=params.model,
        prompt=params.prompt,
        negative_prompt=params.negative_prompt or None,
        seed=seed,
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        params=settings,
        style=keep.style,
        generation_id=generation_id,
        parent_id=keep.parent_id,
        terms=keep.terms,
    )


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Threads of the delivery pool: one a core (a container's share where it is pinned), at
# least 2 (a file write overlaps an encode even on one core), at most 8 (an order's
# images are at most a batch; more threads would only take cores from the event loop).
DELIVERY_THREADS = min(8, max(2, _usable_cores()))
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _delivery_pool() -> ThreadPoolExecutor:
    """This process's delivery pool, started on first use (nothing runs at import)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="kiln-deliver")
        return _pool


def prepare_images(assets: Assets, tenant_id: str, made: list[Made]) -> list[PreparedAsset]:
    """Finish every image of ``made`` and store its files, side by side, answered in
    order; their rows are the caller's to write (``Assets.insert``). Blocking. When one
    fails, the others still end (their files are stored, as content-addressed blobs no
    row refers to) before the first failure in order is raised."""
    if len(made) <= 1:
        return [assets.prepare(tenant_id, image.record, image.pixels) for image in made]
    pool = _delivery_pool()
    futures: list[Future[PreparedAsset]] = [
        pool.submit(assets.prepare, tenant_id, image.record, image.pixels) for image in made
    ]
    wait(futures)
    prepared = [future.result() for future in futures]
    _stamp_in_order(prepared)
    return prepared


def _stamp_in_order(prepared: list[PreparedAsset]) -> None:
    """Give an order's assets ``created`` times in the order's own order: the k-th the
    k-th earliest of the times they were finished at, each at least a microsecond after
    the one before. Listings are newest first by ``created`` (then by id, which is
    random), so images finished side by side would otherwise list in whichever order
    their threads ended, where one after another they always listed in order."""
    previous: datetime | None = None
    for item, created in zip(prepared, sorted(p.row["created"] for p in prepared), strict=True):
        if previous is not None and created <= previous:
            created = previous + timedelta(microseconds=1)
        item.row["created"] = previous = created
