"""``RayModelClient``: the core's ``ModelClient`` port over the models' Serve deployments.

It calls each model's deployment through its handle, keyed by model id, and raises what
the core knows (``serving.ray.errors.core_error``): a replica's own error unwrapped, a
503 for a full queue. A generation, a prompt check or an image embedding whose replica
dies under it is retried once on another replica, else answered 503 ``model_unavailable``
(``serving.ray.replica_failures``: which errors count, how long the retry waits for a
replacement, how a hang-up interacts).

Progress: ``generate_stream`` calls the deployment's streaming method
(``handle.options(stream=True)``) and yields the request's step events, then its output;
a stream whose replica dies is retried once as a whole (its steps start again).
Cancelling either call (leaving the stream, or cancelling the awaiting task) cancels the
call on the replica (``response.cancel()``: awaiting a Serve response does not pass a
cancellation on by itself), which stops at the next step.

Readiness: a request to a model whose replica has not answered yet waits
``READY_WAIT_S`` for a readiness probe, then answers 503 ``model_loading`` with
``retry-after`` while the probe goes on. An always-on model is probed in the background
from the first request or ``/healthz`` until it answers, and is then ready for good
(Serve replaces failed replicas and requests queue for the replacement).

A model that scales to zero (``min_replicas = 0``, ``serving.ray.placement``) is different:
its replica comes and goes with traffic, and a probe is itself a request that wakes it.
So it is probed only when a request for it arrives (never by ``/healthz``, which does not
list it as loading: idle, it has no replica by design), each probe is one try, and its
readiness lasts ``ready_ttl_s`` after its replica last answered (a probe or a request).
Past that, the next request probes again: a running replica answers within
``READY_WAIT_S`` and the request goes on; a removed one is being loaded by that probe and
the request answers 503 ``model_loading``. Nothing but requests keeps its replica alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

import numpy as np

from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from pipelines.progress import StepEvent
from serving.core.errors import service_unavailable
from serving.core.scheduling.admission import Admission
from serving.core.step_channel import StepChannel, stream_of
from serving.ray.errors import RAY_ERRORS, core_error
from serving.ray.replica_failures import ReplicaFailures

logger = logging.getLogger(__name__)


# How long a request waits for a readiness answer before a loading model answers 503.
READY_WAIT_S = 0.5
# Pause between readiness probes of a model whose replica failed to answer.
PROBE_RETRY_S = 1.0
# How long a scale-to-zero model counts as ready after its replica last answered; keep it
# well below the replica's idle timeout (KILN_MODEL_IDLE_S).
ON_DEMAND_READY_S = 10.0


async def cancel_with_caller(response: Any) -> Any:
    """``await response`` (a Serve ``DeploymentResponse``), cancelling the call on the
    replica when the awaiting task is cancelled (a client hung up): awaiting a response
    does not do that by itself, and the replica would run its whole call for nobody."""
    try:
        return await response
    except asyncio.CancelledError:
        response.cancel()
        raise


def by_value(handle: Any) -> Any:
    """``handle`` calling its replicas over their gRPC servers rather than as Ray actor
    tasks (Serve's ``_by_reference=False``, what ``RAY_SERVE_USE_GRPC_BY_DEFAULT`` sets for
    every handle): arguments and results travel in the call, with no object store and no
    task submission through the raylet. On the 2-core CI machine the way to a model
    replica and back went 6.4 -> 4.0 ms, the structural floor 7.5 -> 5.3 ms
    (benchmarks/serving_overhead.py). Serve still routes, batches, multiplexes, streams
    and cancels, and a dead replica still raises Ray's ``ActorUnavailableError``
    (serving/ray/errors.py). Replicas take messages up to
    ``RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH`` (serving/ray/serve_tuning.py). Made on
    an event loop: Serve makes the handle's router there.

    Arguments and results go as plain pickles, not cloudpickles: everything a model call
    carries (``GenerationParams``, ``GenerationOutput``, step events, the errors a
    replica raises) is an importable class, which both write alike, and the C pickler
    does it in half the time (0.15 ms a generation: its params one way, its pixels the
    other). Nothing that needs cloudpickle (a lambda, a class made at run time) may
    travel in a model call."""
    return handle.options(
        _by_reference=False, request_serialization="pickle", response_serialization="pickle"
    )


class RayModelClient:
    """Generation through the models' Ray Serve deployment handles, keyed by model id."""

    def __init__(
        self,
        handles: Mapping[str, Any],
        on_demand: Collection[str] = (),
        ready_ttl_s: float = ON_DEMAND_READY_S,
        failures: ReplicaFailures | None = None,
        admission: Admission | None = None,
    ):
        self.handles = dict(handles)
        self._by_value: dict[str, Any] = {}  # model id -> its handle, calling by value
        # Each model's scheduler admits its calls: in this process, or its actor
        # (serving.ray.app.admission chooses); None: straight to the replicas.
        self.admission = admission or Admission(enabled=False)
        # Calls whose replica died: retried once or 503 (shared with the CLIP client).
        self.failures = failures or ReplicaFailures()
        # Models that scale to zero: probed by requests only, ready for ``ready_ttl_s``.
        self.on_demand = frozenset(on_demand)
        self.ready_ttl_s = ready_ttl_s
        self._ready: set[str] = set()
        self._answered: dict[str, float] = {}  # on-demand model -> its last answer
        self._probes: dict[str, asyncio.Task] = {}

    def unready(self) -> list[str]:
        """Always-on models whose deployment has not yet answered a readiness probe
        (one probe each runs in the background until it does)."""
        always_on = [model_id for model_id in self.handles if model_id not in self.on_demand]
        for model_id in always_on:
            if model_id not in self._ready:
                self._start_probe(model_id)
        return [model_id for model_id in always_on if model_id not in self._ready]

    def is_ready(self, model_id: str) -> bool:
        """Whether a request for ``model_id`` can go to its replica without waiting for
        a load: an always-on model once answered, a scale-to-zero one recently answered."""
        if model_id in self.on_demand:
            answered = self._answered.get(model_id)
            return answered is not None and time.monotonic() - answered < self.ready_ttl_s
        return model_id in self._ready

    def _handle(self, model_id: str) -> Any:
        """``model_id``'s deployment handle, calling by value (``by_value``; made on the
        event loop at first use, where Serve wants a handle's router made); 503
        ``not_deployed`` for a model in the catalog that has no deployment here."""
        handle = self._by_value.get(model_id)
        if handle is not None:
            return handle
        deployed = self.handles.get(model_id)
        if deployed is None:
            raise service_unavailable(
                f"model {model_id!r} is not deployed on this server", code="not_deployed"
            )
        handle = self._by_value[model_id] = by_value(deployed)
        return handle

    def _start_probe(self, model_id: str) -> asyncio.Task:
        probe = self._probes.get(model_id)
        if probe is None or probe.done():
            probe = self._probes[model_id] = asyncio.ensure_future(self._probe(model_id))
        return probe

    def _answered_now(self, model_id: str) -> None:
        if model_id in self.on_demand:
            self._answered[model_id] = time.monotonic()

    async def _probe(self, model_id: str) -> None:
        while True:
            try:
                # On a model scaled to zero this waits while Serve starts a replica.
                await self._handle(model_id).ready.remote()
            except Exception as exc:
                logger.info("model %s not ready yet: %s", model_id, exc)
                if model_id in self.on_demand:
                    return  # one try: the next request probes again
                await asyncio.sleep(PROBE_RETRY_S)
            else:
                self._answered_now(model_id)
                if model_id not in self._ready:
                    self._ready.add(model_id)
                    logger.info("model %s is ready", model_id)
                return

    async def _wait_ready(self, model_id: str) -> None:
        if self.is_ready(model_id):
            return
        probe = self._start_probe(model_id)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(probe), READY_WAIT_S)
        if not self.is_ready(model_id):
            raise service_unavailable(
                f"model {model_id!r} is still loading", retry_after_s=5, code="model_loading"
            )

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        handle = self._handle(params.model)
        await self._wait_ready(params.model)
        if params.style is not None:
            # Routed to a replica that already holds the style (Serve multiplexing).
            handle = handle.options(multiplexed_model_id=params.style.id)
        # Its turn in the model's fair queue; its group's size tells the replica whether
        # to wait for others to batch with.
        async with self.admission.admitted(params) as admitted:
            group = admitted.group_size
            output = await self._call(
                params.model, lambda: cancel_with_caller(handle.generate.remote(params, group))
            )
        self._answered_now(params.model)
        return output

    async def generate_stream(
        self, params: GenerationParams
    ) -> AsyncIterator[StepEvent | GenerationOutput]:
        """``generate`` with the request's step events first, as they come."""
        handle = self._handle(params.model)
        await self._wait_ready(params.model)
        if params.style is not None:
            handle = handle.options(multiplexed_model_id=params.style.id)
        streaming = handle.options(stream=True)
        channel = StepChannel()

        group_size = 0  # set once admitted

        async def consume() -> GenerationOutput:
            output = None
            stream = streaming.generate_stream.remote(params, group_size)
            try:
                async for item in stream:
                    if isinstance(item, StepEvent):
                        channel.put(item)
                    else:
                        output = item
            except asyncio.CancelledError:
                stream.cancel()  # Serve does not cancel the replica's call by itself
                raise
            if output is None:
                raise RuntimeError(f"the stream of {params.model!r} ended without its output")
            return output

        async with self.admission.admitted(params) as admitted:  # its turn in the queue
            group_size = admitted.group_size
            async for item in stream_of(channel, self._call(params.model, consume)):
                if not isinstance(item, StepEvent):
                    self._answered_now(params.model)
                yield item

    async def check(self, params: GenerationParams) -> None:
        """The replica's ``check`` of ``params`` (its engine counts the prompts' tokens):
        a ``ParamError`` comes back as the 400 it is. A model still loading answers 503
        ``model_loading`` first, as a generation would."""
        handle = self._handle(params.model)
        await self._wait_ready(params.model)
        await self._call(params.model, lambda: handle.check.remote(params))
        self._answered_now(params.model)

    async def _call(self, model_id: str, call: Any) -> Any:
        """``call()`` through ``ReplicaFailures``: retried once if its replica died."""
        return await self.failures.call(
            model_id, call, lambda: self._handle(model_id).ready.remote()
        )

    async def ping(self, model_id: str, hold_s: float = 0.0) -> float:
        """A call of the model replica's ``noop`` (it does no work, answering after
        ``hold_s``): the ingress → model hop of every generation, alone."""
        handle = self._handle(model_id)
        try:
            return await handle.noop.remote(hold_s)
        except RAY_ERRORS as exc:
            raise core_error(exc, model_id) from exc

    async def embed_images(
        self, model_id: str, component_id: str, images: list[np.ndarray]
    ) -> np.ndarray:
        handle = self._handle(model_id)
        await self._wait_ready(model_id)
        embeddings = await self._call(
            model_id, lambda: handle.embed_images.remote(component_id, images)
        )
        self._answered_now(model_id)
        return embeddings
