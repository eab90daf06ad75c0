"""One Ray Serve deployment per base model: loads the engine once, batches requests.

Dynamic batching (DESIGN.md §3): ``@serve.batch`` collects pending requests up to
``KILN_MAX_BATCH_SIZE`` *images* (not requests) or ``KILN_BATCH_WAIT_S``; the batch is
split by ``GenerationParams.batch_key`` and each group is one ``engine.generate`` call,
run on the replica's engine thread so its event loop keeps accepting requests. Batches
run one at a time (``max_concurrent_batches=1``): one pipeline call per replica.

LoRA styles (DESIGN.md §3): the style id is the Serve *multiplexed model id*, so Serve
routes a styled request to a replica that already holds that style, and splits batches by
it. Each replica keeps up to ``KILN_STYLES_PER_REPLICA`` styles loaded on its one base
model (``pipelines.style_adapters``: an LRU of named adapters, switched by selection, never
a reload); Serve's multiplexed LRU has the same size and unloads the adapter it evicts.

CUDA out-of-memory (``pipelines.oom``): the engine retries a call with half the images
down to one; a call that still does not fit answers 503 ``out_of_memory``. After
``KILN_OOM_MAX_FAILURES`` such calls in a row, ``check_health`` raises and Serve replaces
the replica (a success in between resets the count).

Progress and cancel (``pipelines.progress``): every request has a ``StepChannel``
(``serving.core.step_channel``) that the engine's step callback fills and reads.
``generate_stream`` (called with ``handle.options(stream=True)``) yields the request's
step events, then its ``GenerationOutput``; it goes through the same ``@serve.batch``
queue as ``generate``. When the caller cancels either call (a client hung up, a job was
cancelled; Serve carries the cancellation to the replica), the request's channel is
marked cancelled: a call whose requests are all cancelled stops at its next step, one
shared with others runs on and drops the cancelled request's images. A request cancelled
while still queued never runs (``@serve.batch`` drops cancelled requests).

Torch is imported only in the replica's constructor, never at module import.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
from ray import serve

from pipelines.fast_path import FastPathOptions
from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams, StyleRef
from pipelines.progress import StepEvent
from serving.core.logs import configure_replica_logging
from serving.core.settings import Settings
from serving.core.step_channel import ChannelListener, StepChannel, stream_of
from weights.catalog import ComponentSpec, ModelKind, ModelSpec

logger = logging.getLogger(__name__)


def replica_fast_path(settings: Settings, spec: ModelSpec) -> FastPathOptions:
    """The fast path a replica of ``spec`` applies: the settings', without the compiled
    style slot on an edit model (instruct, inpaint), which serves no styles: the slot
    costs every compiled block call a little CPU time (benchmarks/fast_path_parts.py)."""
    options = settings.fast_path()
    return options if spec.kind == ModelKind.BASE else replace(options, style_slot=False)


@dataclass(frozen=True)
class BatchItem:
    """One request in the batch queue. ``weight`` is its image count, capped at the batch
    size so a request bigger than a whole batch runs alone instead of being refused.
    """

    params: GenerationParams
    weight: int
    # The request's progress channel and cancel flag.
    channel: StepChannel | None = field(default=None, compare=False)


def _images_in(items: list[BatchItem]) -> int:
    return sum(item.weight for item in items)


class LoadedStyle:
    """What Serve's multiplexed cache holds per style; unloads the adapter on eviction."""

    def __init__(self, deployment: ModelDeployment, style_id: str) -> None:
        self.deployment = deployment
        self.style_id = style_id

    def __del__(self) -> None:
        # Serve calls this (in a thread) when its LRU evicts the style.
        try:
            self.deployment.unload_style(self.style_id)
        except Exception:  # never raise from __del__
            logger.exception("could not unload style %s", self.style_id)


@serve.deployment(ray_actor_options={"num_cpus": 0.5, "num_gpus": 0})
class ModelDeployment:
    """A replica holding one loaded ``Engine``."""

    def __init__(
        self, settings: Settings, spec: ModelSpec, components: tuple[ComponentSpec, ...] = ()
    ):
        # Before torch/diffusers import: nothing may reach for the Hub at run time.
        os.environ["HF_HUB_OFFLINE"] = "1"
        configure_replica_logging()
        import torch

        from pipelines.engine import Engine

        torch.set_num_threads(settings.effective_torch_threads())
        self.spec = spec
        self.max_batch_size = settings.max_batch_size
        self.batch_wait_s = settings.batch_wait_s
        self._in_flight = 0
        self.engine = Engine.load(
            spec,
            device=settings.engine_device,
            style_capacity=settings.styles_per_replica,
            components=components,
            fast_path=replica_fast_path(settings, spec),
        )
        self.engine.oom.retry = settings.oom_retry
        # Encoders without windows count prompts (Engine.check); CLIP's take any length.
        self._counts_prompts = self.engine.family.sequence_length_of(spec) is not None
        self.oom_max_failures = settings.oom_max_failures
        # One long-lived thread runs every pipeline call: torch keeps one OpenMP team
        # (a fresh caller thread would build another and oversubscribe the cores), and
        # calls are serialised by construction.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{spec.id}")
        self._style_files: dict[str, StyleRef] = {}
        # Built here, not as a decorated method, so its LRU takes the configured size;
        # Serve finds it on the instance and routes by it.
        multiplexed = serve.multiplexed(max_num_models_per_replica=settings.styles_per_replica)
        self._load_style = multiplexed(self._style_loader())
        self._batched.set_max_batch_size(settings.max_batch_size)
        self._batched.set_batch_wait_timeout_s(settings.batch_wait_s)
        logger.info(
            "model %s ready (torch threads %d, batch %d images / %.3fs)",
            spec.id,
            torch.get_num_threads(),
            settings.max_batch_size,
            settings.batch_wait_s,
        )

    def _style_loader(self):  # noqa: ANN202 (an async function Serve wraps)
        async def load_style(style_id: str) -> LoadedStyle:
            style = self._style_files[style_id]
            loop = asyncio.get_running_loop()
            # On the engine thread: adapters change the shared modules.
            await loop.run_in_executor(self._executor, self.engine.styles.load, style)
            return LoadedStyle(self, style_id)

        return load_style

    async def generate(self, params: GenerationParams, group_size: int = 0) -> GenerationOutput:
        """Images for one request, possibly computed in a call shared with others;
        cancelling the call cancels the request at its next step. ``group_size``: the
        calls the fair queue admitted together with this one (0: not queued)."""
        channel = StepChannel(keep=False)
        try:
            return await self._generate(params, channel, group_size)
        except asyncio.CancelledError:
            channel.cancelled = True
            raise

    async def generate_stream(
        self, params: GenerationParams, group_size: int = 0
    ) -> AsyncIterator[StepEvent | GenerationOutput]:
        """``generate`` as a stream (``handle.options(stream=True)``): the request's step
        events as they come, then its output. Cancelling it cancels the request."""
        channel = StepChannel()
        async for item in stream_of(channel, self._generate(params, channel, group_size)):
            yield item

    async def _generate(
        self, params: GenerationParams, channel: StepChannel, group_size: int
    ) -> GenerationOutput:
        if params.model != self.spec.id:
            raise ValueError(f"request for {params.model!r} reached {self.spec.id!r}")
        if self._counts_prompts:
            # Alone, before the batch: a prompt past the encoder's limit (T5, Qwen3) is a
            # ParamError for this request only, not for every request it would share a
            # call with (the paid path asked ``check`` already; other callers may not).
            await self.check(params)
        if params.style is not None:
            # Loads the adapter on first use and marks it recently used; the engine
            # reloads it by itself should it have been evicted before the batch runs.
            self._style_files[params.style.id] = params.style
            await self._load_style(params.style.id)
        self._in_flight += 1
        try:
            # A request that finds the replica idle with no one to share a call with
            # starts at once: its batch could only be itself, so it skips Serve's batch
            # queue (its task and futures: 0.3-0.8 ms a call on 2 cores) and runs its
            # batch here, still one call at a time on the engine's thread. ``group_size``
            # says how many calls the fair queue admitted together (0: no queue): a
            # group's members arrive a few ms apart and wait the window to share a call.
            # Requests that arrive while others are in flight wait it too.
            idle = self._in_flight == 1 and group_size <= 1
            item = BatchItem(params, min(params.n, self.max_batch_size), channel)
            began = time.perf_counter()
            if idle:
                (result,) = await self.run_batch([item])
            else:
                result = await self._batched(item)
        finally:
            self._in_flight -= 1
        if isinstance(result, BaseException):
            raise result
        # The batch queue, the engine thread and the engine: the serving path's figures
        # (benchmarks/serving_overhead.py) tell the replica's part from the hop's.
        result.timings["replica"] = time.perf_counter() - began
        return result

    async def check(self, params: GenerationParams) -> None:
        """``Engine.check``: refuse prompts the encoder would cut (``ParamError``). On the
        engine thread: a fast tokenizer is not safe to call while a running call pads with
        it (its truncation state is shared). A no-op on CLIP models."""
        if self._counts_prompts:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self.engine.check, params)

    # The decorator's sizes are placeholders: the constructor sets the configured ones.
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02, batch_size_fn=_images_in)
    async def _batched(self, items: list[BatchItem]) -> list[GenerationOutput | BaseException]:
        return await self.run_batch(items)

    async def run_batch(self, items: list[BatchItem]) -> list[GenerationOutput | BaseException]:
        """One batch: a pipeline call per batch key, in arrival order; an exception
        in place of the outputs of a group that failed, so the others still answer.
        """
        groups: dict[object, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(item.params.batch_key, []).append(index)
        results: dict[int, GenerationOutput | BaseException] = {}
        loop = asyncio.get_running_loop()
        for indices in groups.values():
            group = [items[i].params for i in indices]
            listener = ChannelListener([items[i].channel for i in indices])
            try:
                outputs = await loop.run_in_executor(
                    self._executor, self.engine.generate, group, listener
                )
            except Exception as exc:
                logger.exception("generation failed for %d request(s)", len(group))
                outputs = [exc] * len(group)
            for index, output in zip(indices, outputs, strict=True):
                results[index] = output
        return [results[index] for index in range(len(items))]

    async def embed_images(self, component_id: str, images: list[np.ndarray]) -> np.ndarray:
        """IP-Adapter image embeddings (pins, reference mode ``ip_adapter``), computed on
        the engine thread between pipeline calls."""
        from pipelines.ip_adapter import embed_images

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, embed_images, self.engine, component_id, images
        )

    def unload_style(self, style_id: str) -> None:
        """Drop a style's adapter (Serve's multiplexed LRU evicted it)."""
        self._executor.submit(self.engine.styles.unload, style_id).result()
        self._style_files.pop(style_id, None)

    async def ready(self) -> str:
        """Answers once the constructor has loaded the engine (the ingress probes it)."""
        return self.spec.id

    async def noop(self, hold_s: float = 0.0) -> float:
        """No work: answers after ``hold_s`` seconds on the replica's event loop; the
        seconds it held. The serving path's structural floor (``POST /v1/bench/noop``);
        held as long as a pipeline call, the floor of a call answered after the same
        wait as a generation's."""
        began = time.perf_counter()
        if hold_s > 0:
            await asyncio.sleep(hold_s)
        return time.perf_counter() - began

    def check_health(self) -> None:
        """Ray Serve's health check (every ``health_check_period_s``): raising makes Serve
        replace this replica. Fails after ``KILN_OOM_MAX_FAILURES`` calls in a row ran
        out of GPU memory even at one image: the card's memory is then in a state (a
        leak, fragmentation, another process) that a fresh replica clears."""
        failures = self.engine.oom.consecutive_failures
        if failures >= self.oom_max_failures:
            raise RuntimeError(
                f"{self.spec.id}: {failures} calls in a row ran out of GPU memory "
                f"(KILN_OOM_MAX_FAILURES={self.oom_max_failures}); replica needs a restart"
            )
