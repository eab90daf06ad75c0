"""The Ray Data worker of a batch: one actor holds an application core and runs lines
through the same use cases as HTTP.

Each actor builds the core (``serving.core.app.build_core``, no FastAPI app) over a
``LocalModelClient`` (engines in the actor: the pool's model loaded when the actor
starts, any other on first use) and calls its use cases (``generations``, ``edits``,
``agentic``) with the line's order (its request converted once by the route's own
request class) and tenant, so validation, styles, pins, references, watermarks,
licenses, asset storage and charging are exactly HTTP's. The request id is
``batch-<run id>-line-<n>``: the ledger's reservation reference names the run and line.

What comes back to the driver is one pickled ``LineResult`` per line, holding the final
file bytes: PNGs encoded once, here, from each delivered image's pixels (the watermarked
preview for a style image, as HTTP answers it), with the line's recorded request, kind,
number and the image's seed as ``tEXt`` chunks, so a file's bytes are a function of its
pixels and its request only (the asset's own PNG carries its asset id, which differs per
run).

A line rerun after its worker died (``serving.ray.batch.runner``: Ray restarts the actor
and hands the line out again) first releases what the dead attempt left held: its
reservation, named by the line's request id, has no process left to renew or release it.

A failed line's error is the API's error object plus its ``status``, exactly what the
route would have answered; an internal error (500) says no more than HTTP does, and its
traceback goes to the actor's log (Ray's session log folder).
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines import provenance
from serving.core.batches.lines import canonical_json, recorded_request
from serving.core.lower_errors import kiln_error_for
from serving.core.paid_images import ImageResult
from serving.core.scheduling.context import current_priority
from serving.core.settings import Settings
from weights.catalog import Catalog

logger = logging.getLogger(__name__)


@dataclass
class LineResult:
    """What a worker made of one line: the files' bytes, or the error in the API's shape."""

    number: int
    images: list[bytes] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    asset_ids: list[str] = field(default_factory=list)
    credits_charged: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    node_id: str = ""
    error: dict[str, Any] | None = None
    stopped: bool = False  # not run: the run was stopping when the line reached its worker


def request_id(run_id: str, number: int) -> str:
    """The request id (and ledger reference) of line ``number`` of run ``run_id``."""
    return f"batch-{run_id}-line-{number}"


def output_png(pixels: np.ndarray, number: int, kind: str, recorded: dict, seed: int) -> bytes:
    """The batch file of one delivered image (see the module docstring)."""
    text = {
        "kiln:request": canonical_json({"kind": kind, "request": recorded}),
        "kiln:line": str(number),
        "kiln:seed": str(seed),
    }
    # The same bytes for the same pixels and text (a fixed level, no timestamps); Kiln's
    # own writer, as every PNG it stores (ISA-L's level 3 for zlib's 6).
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    return provenance.encode_png_pixels(pixels, text, compress_level=6)


class BatchWorker:
    """A Ray Data callable class: ``map_batches(BatchWorker, ...)`` makes a pool of these.

    A batch is a dict of columns ``number`` and ``line`` (the JSON of ``{"kind",
    "request"}``); the answer has ``number`` and ``payload`` (a pickled ``LineResult``).
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        tenant_id: str,
        run_id: str,
        model: str = "",
        stop_signal: Any = None,
    ):
        import torch

        from serving.core.app import build_core
        from serving.core.model_client import LocalModelClient

        # Ray sets OMP_NUM_THREADS=1 in fractional-CPU actors: say what we want.
        torch.set_num_threads(settings.effective_torch_threads())
        client = LocalModelClient(
            catalog,
            settings.engine_device,
            settings.styles_per_replica,
            fast_path=settings.fast_path(),
        )
        self.core = build_core(settings, catalog, client)
        self.tenant_id = tenant_id
        self.run_id = run_id
        # The run's ``StopSignal`` actor (serving.ray.batch.runner): asked before each line.
        self.stop_signal = stop_signal
        self.loop = asyncio.new_event_loop()
        self.node_id = _node_id()
        if model:
            # Loaded now, not by the first line: the pool waits for every actor to be
            # ready before it hands out lines, so lines spread over all of them.
            client.load(model)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payloads = [
            pickle.dumps(self.run_line(int(number), json.loads(str(line))))
            for number, line in zip(batch["number"], batch["line"], strict=True)
        ]
        return {"number": np.asarray(batch["number"]), "payload": np.array(payloads, dtype=object)}

    def run_line(self, number: int, line: dict[str, Any]) -> LineResult:
        """Run one line; any failure becomes the line's error (the run goes on)."""
        kind, request = line["kind"], line["request"]
        result = LineResult(number, node_id=self.node_id)
        if self._stopping():
            result.stopped = True
            return result
        started = time.perf_counter()
        self._release_dead_attempt(request_id(self.run_id, number))
        try:
            made = self.loop.run_until_complete(self._create(kind, request, number))
        except Exception as exc:
            error = kiln_error_for(exc)
            if error.status >= 500:
                logger.error("batch line %d failed", number, exc_info=exc)
            result.error = {"status": error.status, **error.body()["error"]}
            result.timings = {"line_total": time.perf_counter() - started}
            return result
        recorded = recorded_request(kind, request)
        for delivered in made.images:
            seed = delivered.asset.seed
            result.images.append(output_png(delivered.pixels, number, kind, recorded, seed))
            result.seeds.append(seed)
            result.asset_ids.append(delivered.asset.id)
        result.credits_charged = made.credits_charged
        result.timings = {**made.timings, "line_total": time.perf_counter() - started}
        return result

    async def _create(self, kind: str, request: dict[str, Any], number: int) -> ImageResult:
        """The route's use case for ``kind``, its order converted once from the line's
        request by the route's own request class."""
        core, tenant_id, rid = self.core, self.tenant_id, request_id(self.run_id, number)
        current_priority.set("batch")  # this line's task only: behind interactive work
        if kind == "generation":
            from serving.http.generations.protocol import GenerationRequest

            order = GenerationRequest.model_validate_json(json.dumps(request)).to_order()
            return await core.generations.create(tenant_id, order, rid)
        if kind == "edit":
            from serving.http.edits.protocol import EditRequest

            edit = EditRequest.model_validate_json(json.dumps(request)).to_order()
            return await core.edits.create(tenant_id, edit, rid)
        if kind == "agentic":
            from serving.http.agentic.protocol import AgenticGenerationRequest

            agentic = AgenticGenerationRequest.model_validate_json(json.dumps(request)).to_order()
            return await core.agentic.create(tenant_id, agentic, rid)
        raise ValueError(f"unknown kind {kind!r}")

    def _release_dead_attempt(self, reference: str) -> None:
        """Release the open reservations of an earlier attempt at this line, whose worker
        died under it (none on a first attempt: the line's request id is unique)."""
        from sqlalchemy import select

        from serving.core.ledger.schema import reservations

        ledger = self.core.ledger
        query = select(reservations.c.id).where(
            reservations.c.reference == reference, reservations.c.state == "open"
        )
        with ledger.engine.connect() as conn:
            held = conn.execute(query).scalars().all()
        for reservation_id in held:
            returned = ledger.release(reservation_id)
            logger.warning(
                "%s: released %d credit(s) its dead worker's attempt held", reference, returned
            )

    def _stopping(self) -> bool:
        if self.stop_signal is None:
            return False
        import ray

        return bool(ray.get(self.stop_signal.is_set.remote()))


def _node_id() -> str:
    """The Ray node this actor runs on ("" outside Ray)."""
    import ray

    # Asked outside Ray, the runtime context would start a local Ray of its own.
    if not ray.is_initialized():
        return ""
    return ray.get_runtime_context().get_node_id()
