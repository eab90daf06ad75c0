"""The model replica's progress stream and cancel, in-process on tiny SD 1.5 (no Ray
cluster; the class under the Serve decorator, its ``@serve.batch`` queue included):
``generate_stream`` yields every step then the output ``generate`` gives; a stream left
after its first step, or a ``generate`` cancelled mid-call (what Serve does to the
replica's task when the caller cancels), stops the pipeline call at the next step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from ray.serve import batching

from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from pipelines.progress import StepEvent
from serving.core.settings import Settings
from serving.core.step_channel import StepChannel
from serving.ray.model_deployment import BatchItem, ModelDeployment


class LeavesAtFirstStep(StepChannel):
    """A request's channel whose caller goes away once it has seen a step."""

    def _add(self, event: StepEvent) -> None:
        super()._add(event)
        self.cancelled = True


@pytest.fixture(scope="module")
def replica(catalog):
    # Outside a Serve replica, the batch queue's one look at the replica's context (a
    # max_ongoing_requests warning) has nothing to read.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            batching._BatchQueue,
            "_warn_if_max_batch_size_exceeds_max_ongoing_requests",
            lambda _: None,
        )
        settings = Settings(max_batch_size=4, device="cpu", torch_threads=2)
        yield ModelDeployment.func_or_class(settings, catalog.get("tiny-sd15"))
        # The queue is the decorated method's, one per process (a replica's process has
        # one instance): drop it, so later tests' replicas start without one, as before.
        lazy = ModelDeployment.func_or_class._batched.set_max_batch_size.__self__
        lazy._queue = None


def params(catalog, steps: int, seed: int = 1) -> GenerationParams:
    spec = catalog.get("tiny-sd15")
    return GenerationParams.build(spec, prompt="a kiln", steps=steps, seed=seed)


def test_the_stream_and_cancel_on_the_replica(replica, catalog):
    """One event loop for the whole test: the batch queue belongs to the loop it was
    first used on, as a replica's does (the only test here that uses it)."""

    async def next_call_time() -> float:
        started = time.monotonic()
        await replica.generate(params(catalog, 2, seed=3))
        return time.monotonic() - started

    async def run() -> None:
        items = [item async for item in replica.generate_stream(params(catalog, 3))]
        plain = await replica.generate(params(catalog, 3))
        steps, output = items[:-1], items[-1]
        assert steps and all(isinstance(s, StepEvent) for s in steps)
        assert steps[-1].step == 3 and [s.step for s in steps] == sorted(s.step for s in steps)
        assert isinstance(output, GenerationOutput) and not output.cancelled
        np.testing.assert_array_equal(output.images[0], plain.images[0])

        started = time.monotonic()
        await replica.generate(params(catalog, 40, seed=4))
        full_call = time.monotonic() - started  # 400 steps would take ten times this

        stream = replica.generate_stream(params(catalog, 400))
        first = await stream.__anext__()
        assert isinstance(first, StepEvent) and first.total == 400
        await stream.aclose()  # the caller went away: the call stops at its next step
        assert await next_call_time() < full_call

        call = asyncio.ensure_future(replica.generate(params(catalog, 400, seed=2)))
        while not replica._in_flight:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # inside its pipeline call
        call.cancel()  # what Serve does to the replica's task when its caller cancels
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await next_call_time() < full_call

    asyncio.run(run())


def test_a_cancelled_request_of_a_shared_call_is_dropped_and_the_call_runs_on(replica, catalog):
    async def run() -> list:
        leaving, staying = LeavesAtFirstStep(), StepChannel()
        items = [
            BatchItem(params(catalog, 6, seed=7), 1, leaving),
            BatchItem(params(catalog, 6, seed=8), 1, staying),
        ]
        outputs = await replica.run_batch(items)
        # run_batch, not generate: the batch queue belongs to the first test's event loop.
        alone = await replica.run_batch([BatchItem(params(catalog, 6, seed=8), 1)])
        return [*outputs, staying.take(), alone[0]]

    dropped, kept, steps, alone = asyncio.run(run())
    assert dropped.cancelled and dropped.images == []
    assert not kept.cancelled and steps[-1].step == 6  # the call ran to its end for it
    assert int(np.abs(kept.images[0].astype(int) - alone.images[0].astype(int)).max()) <= 2


@contextmanager
def own_replica(
    catalog, batch_wait_s: float
) -> Iterator[tuple[ModelDeployment, pytest.MonkeyPatch]]:
    """A replica whose batch queue belongs to the test's own event loop (dropped after),
    and the test's monkeypatch."""
    lazy = ModelDeployment.func_or_class._batched.set_max_batch_size.__self__
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            batching._BatchQueue,
            "_warn_if_max_batch_size_exceeds_max_ongoing_requests",
            lambda _: None,
        )
        lazy._queue = None
        settings = Settings(
            max_batch_size=4, device="cpu", torch_threads=2, batch_wait_s=batch_wait_s
        )
        try:
            yield ModelDeployment.func_or_class(settings, catalog.get("tiny-sd15")), patch
        finally:
            lazy._queue = None


def test_a_call_admitted_alone_skips_the_batch_window_and_a_group_waits_it(catalog):
    """Through the fair queue a call's ``group_size`` is how many calls were admitted
    with it: alone (1) it starts at once; a group's members wait the batch window to
    share a call (here 1.5 s, so the difference cannot be noise)."""
    with own_replica(catalog, batch_wait_s=1.5) as (replica, _):

        async def timed(group_size: int) -> float:
            started = time.monotonic()
            await replica.generate(params(catalog, 1, seed=5), group_size)
            return time.monotonic() - started

        async def run() -> tuple[float, float]:
            await timed(1)  # the first call's one-time costs
            return await timed(1), await timed(2)

        alone, grouped = asyncio.run(run())
    assert alone < 1.0, alone
    assert grouped >= 1.5, grouped


def test_a_lone_request_skips_the_batch_queue_and_one_beside_it_does_not(catalog):
    """An idle replica runs a lone request's batch itself (that batch could only be the
    request: no batch queue's task and futures on its way); a request that arrives while
    another is in flight goes through Serve's batch queue, to share a call with whoever
    comes in the window. Either way a request gets the same pixels."""
    with own_replica(catalog, batch_wait_s=0.05) as (replica, patch):
        queued: list[object] = []
        put = batching._BatchQueue.put
        patch.setattr(batching._BatchQueue, "put", lambda q, r: (queued.append(r), put(q, r)))

        async def run() -> tuple[list[GenerationOutput], int]:
            alone = await replica.generate(params(catalog, 2, seed=3))
            queued_alone = len(queued)
            beside = await asyncio.gather(
                replica.generate(params(catalog, 2, seed=3)),
                replica.generate(params(catalog, 2, seed=4)),
            )
            return [alone, *beside], queued_alone

        (alone, first, second), queued_alone = asyncio.run(run())
    assert queued_alone == 0 and len(queued) == 1
    assert np.array_equal(alone.images[0], first.images[0])
    assert len(second.images) == 1 and not np.array_equal(first.images[0], second.images[0])
