"""The engine's progress channel (pipelines/progress.py) on tiny SD 1.5: every step is
told, a call whose requests are all cancelled stops at the next step, one cancelled
request of a shared call loses its images while the others are unchanged."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipelines.engine import Engine
from pipelines.params import GenerationParams
from pipelines.progress import StepEvent


class Recorder:
    """A listener that records steps and cancels chosen requests after a step."""

    def __init__(self, cancel_after: dict[int, int] | None = None) -> None:
        self.events: list[StepEvent] = []
        self.cancel_after = cancel_after or {}
        self.lock = threading.Lock()

    def on_step(self, event: StepEvent) -> None:
        with self.lock:
            self.events.append(event)

    def cancelled(self, request_index: int) -> bool:
        after = self.cancel_after.get(request_index)
        if after is None:
            return False
        return any(e.request_index == request_index and e.step >= after for e in self.events)

    def steps_of(self, index: int) -> list[int]:
        return [e.step for e in self.events if e.request_index == index]


@pytest.fixture(scope="module")
def engine(engines) -> Engine:
    return engines["tiny-sd15"]  # the session's: listeners change nothing on it


def params(catalog, steps: int, seed: int, n: int = 1, prompt: str = "a kiln") -> GenerationParams:
    spec = catalog.get("tiny-sd15")
    return GenerationParams.build(spec, prompt=prompt, steps=steps, seed=seed, n=n)


def test_every_step_of_every_request_is_told_and_pixels_do_not_change(catalog, engine):
    requests = [params(catalog, 4, seed=1, n=2), params(catalog, 4, seed=7, prompt="a vase")]
    recorder = Recorder()
    heard = engine.generate(requests, recorder)
    assert recorder.steps_of(0) == [1, 2, 3, 4] and recorder.steps_of(1) == [1, 2, 3, 4]
    assert {(e.total, e.images_done) for e in recorder.events} == {(4, 0)}
    assert [e.images for e in recorder.events if e.request_index == 0] == [2] * 4
    quiet = engine.generate(requests)
    for a, b in zip(heard, quiet, strict=True):
        assert not a.cancelled and len(a.images) == len(b.images)
        assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))


def test_a_call_whose_requests_are_all_cancelled_stops_at_the_next_step(catalog, engine):
    recorder = Recorder(cancel_after={0: 2})
    (output,) = engine.generate([params(catalog, 200, seed=3, n=2)], recorder)
    assert output.cancelled and output.images == [] and output.seeds == ()
    assert recorder.steps_of(0) == [1, 2]  # the call stopped right after the cancel
    assert "decode" not in output.timings


def test_one_cancelled_request_of_a_shared_call_loses_its_images_only(catalog, engine):
    requests = [params(catalog, 6, seed=11), params(catalog, 6, seed=12, prompt="a bowl")]
    recorder = Recorder(cancel_after={0: 2})
    cancelled, kept = engine.generate(requests, recorder)
    assert cancelled.cancelled and cancelled.images == []
    assert not kept.cancelled and len(kept.images) == 1
    assert recorder.steps_of(1) == [1, 2, 3, 4, 5, 6]  # ran on for the other request
    alone = engine.generate([requests[1]])[0].images[0]
    assert int(np.abs(kept.images[0].astype(int) - alone.astype(int)).max()) <= 2
