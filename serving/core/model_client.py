"""How the core reaches loaded models: the ``ModelClient`` port, and an in-process client.

``ModelClient`` is the protocol the use cases call. Its implementations are adapters:
``serving.ray.model_client.RayModelClient`` calls each model's Serve deployment through
its handle (the server); ``LocalModelClient``, here, runs engines in this process (tools,
benchmarks, the batch worker and tests that need no Ray) and loads an engine only when a
request first reaches it.

Cancel: cancelling a ``generate`` (its awaiting task) or leaving a ``generate_stream``
cancels the request where it runs, at its next denoising step (``pipelines.progress``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from pipelines.progress import StepEvent
from serving.core.scheduling.admission import Admission, LocalAdmission
from serving.core.step_channel import ChannelListener, StepChannel, stream_of

logger = logging.getLogger(__name__)


def held_for(hold_s: float) -> float:
    """Wait ``hold_s`` seconds doing nothing (a bench no-op's far side, on the engine
    thread); the seconds it waited."""
    began = time.perf_counter()
    if hold_s > 0:
        time.sleep(hold_s)
    return time.perf_counter() - began


class ModelClient(Protocol):
    """Runs resolved generation parameters on the model they name."""

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        """Images for one request; raises ``KilnError`` (503 while the model loads or
        its queue is full) and the pipelines' errors (``ParamError``, ``OutOfGpuMemory``)."""
        ...

    def generate_stream(
        self, params: GenerationParams
    ) -> AsyncIterator[StepEvent | GenerationOutput]:
        """``generate``, yielding the request's step events (``pipelines.progress``) as
        they come, then its ``GenerationOutput`` last. Leaving the stream early cancels
        the request at its next step."""
        ...

    async def check(self, params: GenerationParams) -> None:
        """Refuse ``params`` whose prompts its model's encoder would cut (``ParamError``
        naming the field: T5 and Qwen3 count tokens, with the model's own tokenizer, where
        the model runs). The paid path asks before it reserves anything, for models whose
        ``params.sequence_length`` is set; CLIP models take any length."""
        ...

    def unready(self) -> list[str]:
        """Models that cannot take requests yet (still loading)."""
        ...

    # Admission to the models' replicas: generations wait their turn in the model's fair
    # queue (serving.core.scheduling); the paid path holds quotas through it.
    admission: Admission

    async def embed_images(
        self, model_id: str, component_id: str, images: list[np.ndarray]
    ) -> np.ndarray:
        """IP-Adapter image embeddings of ``images`` (uint8 HxWx3) by the replica of
        ``model_id`` (pins, reference mode ``ip_adapter``): float32 ``(n, dim)``."""
        ...

    async def ping(self, model_id: str, hold_s: float = 0.0) -> float:
        """One round trip to where ``model_id`` runs that does no work (the serving
        path's structural floor, ``KILN_BENCH``): its far side answers after ``hold_s``
        seconds of waiting, as a pipeline call answers after its work. The seconds it
        held, as measured there."""
        ...


class LocalModelClient:
    """Engines in this process, one per model, loaded on first use.

    Every engine call runs on one dedicated thread: calls are serialised (one pipeline
    call at a time, as in a replica) and torch keeps a single OpenMP team, where a new
    caller thread would start another and oversubscribe the cores.
    """

    def __init__(
        self,
        catalog: Any,
        device: str | None = None,
        styles_per_replica: int = 8,
        fast_path: Any = None,
        admission: Admission | None = None,
    ):
        self.catalog = catalog
        # Calls queue per model as in the server (serving.core.scheduling), in-process.
        self.admission = admission or LocalAdmission()
        self.device = device
        self.styles_per_replica = styles_per_replica
        self.fast_path = fast_path  # FastPathOptions (Settings.fast_path()) or None
        self._engines: dict[str, Any] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="local-engine")

    def unready(self) -> list[str]:
        """Always empty: engines load on first use, inside the request."""
        return []

    def load(self, model_id: str) -> None:
        """Load ``model_id``'s engine now (on the engine thread), not at its first request."""
        self._executor.submit(self._engine, model_id).result()

    def _engine(self, model_id: str) -> Any:
        from pipelines.engine import Engine

        if model_id not in self._engines:
            logger.info("loading %s in-process", model_id)
            spec = self.catalog.get(model_id)
            self._engines[model_id] = Engine.load(
                spec,
                device=self.device,
                style_capacity=self.styles_per_replica,
                components=tuple(self.catalog.components.values()),
                fast_path=self.fast_path,
            )
        return self._engines[model_id]

    def _generate_sync(self, params: GenerationParams, channel: StepChannel) -> GenerationOutput:
        return self._engine(params.model).generate([params], ChannelListener([channel]))[0]

    def _embed_sync(self, model_id: str, component_id: str, images: list) -> np.ndarray:
        from pipelines.ip_adapter import embed_images

        return embed_images(self._engine(model_id), component_id, images)

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        loop = asyncio.get_running_loop()
        channel = StepChannel(keep=False)
        async with self.admission.admitted(params):  # its turn in the model's fair queue
            try:
                return await loop.run_in_executor(
                    self._executor, self._generate_sync, params, channel
                )
            except asyncio.CancelledError:
                channel.cancelled = True  # the engine thread stops the call at its next step
                raise

    async def generate_stream(
        self, params: GenerationParams
    ) -> AsyncIterator[StepEvent | GenerationOutput]:
        loop = asyncio.get_running_loop()
        channel = StepChannel()
        async with self.admission.admitted(params):  # its turn in the model's fair queue
            work = loop.run_in_executor(self._executor, self._generate_sync, params, channel)
            async for item in stream_of(channel, work):
                yield item

    async def check(self, params: GenerationParams) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._check_sync, params)

    def _check_sync(self, params: GenerationParams) -> None:
        self._engine(params.model).check(params)

    async def embed_images(
        self, model_id: str, component_id: str, images: list[np.ndarray]
    ) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._embed_sync, model_id, component_id, images
        )

    async def ping(self, model_id: str, hold_s: float = 0.0) -> float:
        """The hop a generation takes in-process: onto the engine thread and back."""
        self.catalog.get(model_id)  # UnknownModelError → 404, as a generation answers
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, held_for, hold_s)
