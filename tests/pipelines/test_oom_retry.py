"""CUDA out-of-memory recovery on a real tiny engine (pipelines.oom).

The fault is injected, not mocked: a forward pre-hook on the engine's real UNet raises
``torch.OutOfMemoryError`` when the UNet is given more images than a limit, exactly where
a card runs out of memory. Everything else (prompt encoding, scheduler, VAE) is the real
pipeline. Steps are 1, so one pipeline call is one UNet forward and the hook's record of
batch sizes is the record of calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from pipelines.oom import OomRecovery, OutOfGpuMemory, is_out_of_memory, split_images
from pipelines.params import GenerationParams

MODEL = "tiny-sd15"


@dataclass
class UnetFault:
    """Raises out-of-memory for UNet batches over ``max_images`` (None: never)."""

    max_images: int | None
    images_per_call: list[int] = field(default_factory=list)
    message: str = "CUDA out of memory. Tried to allocate 2.00 GiB"
    error: type[Exception] = torch.OutOfMemoryError

    def __call__(self, module, args, kwargs) -> None:
        sample = args[0] if args else kwargs["sample"]
        # With classifier-free guidance the UNet sees each image twice (cond + uncond).
        images = sample.shape[0] // 2
        self.images_per_call.append(images)
        if self.max_images is not None and images > self.max_images:
            raise self.error(self.message)


@contextlib.contextmanager
def faulty(engine, fault: UnetFault) -> Iterator[UnetFault]:
    handle = engine.pipe.unet.register_forward_pre_hook(fault, with_kwargs=True)
    try:
        yield fault
    finally:
        handle.remove()


@pytest.fixture
def engine(engines):
    engine = engines[MODEL]
    engine.oom = OomRecovery()  # fresh counts; the session's engine is shared
    yield engine
    engine.oom = OomRecovery()


def request(catalog, n: int, seed: int, prompt: str = "a lighthouse at dusk") -> GenerationParams:
    spec = catalog.get(MODEL)
    return GenerationParams.build(spec, prompt=prompt, n=n, seed=seed, steps=1, guidance=7.0)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.slow  # two 5-image calls, and the first call on the session's engine
def test_an_oversized_batch_is_retried_in_halves_with_the_same_images(catalog, engine):
    requests = [request(catalog, 3, seed=10), request(catalog, 2, seed=50, prompt="a red fox")]
    with faulty(engine, UnetFault(None)) as clean:
        expected = engine.generate(requests)
    assert clean.images_per_call == [5]

    with faulty(engine, UnetFault(max_images=2)) as fault:
        outputs = engine.generate(requests)
    # 5 fails, 3 fails, then calls of 2: 2 + 2 + 1, images already made are kept.
    assert fault.images_per_call == [5, 3, 2, 2, 1]
    assert engine.oom.halvings == 2
    assert engine.oom.consecutive_failures == 0
    for got, want in zip(outputs, expected, strict=True):
        assert got.seeds == want.seeds  # (10, 11, 12) and (50, 51): a request split across calls
        assert len(got.images) == len(want.images)
        for a, b in zip(got.images, want.images, strict=True):
            # Same seeds, same images (the batch-size rounding of the unsplit test: <= 2).
            assert max_diff(a, b) <= 2
    assert outputs[0].timings["batch_images"] == 2


def test_a_request_that_does_not_fit_at_one_image_fails_and_is_counted(catalog, engine):
    with faulty(engine, UnetFault(max_images=0)) as fault:
        for attempt in range(1, 3):
            with pytest.raises(OutOfGpuMemory, match="out of GPU memory"):
                engine.generate([request(catalog, 4, seed=1)])
            assert engine.oom.consecutive_failures == attempt
    assert fault.images_per_call == [4, 2, 1] * 2
    # A success resets the count.
    engine.generate([request(catalog, 1, seed=1)])
    assert engine.oom.consecutive_failures == 0


def test_with_retry_off_the_first_out_of_memory_fails(catalog, engine):
    engine.oom = OomRecovery(retry=False)
    with faulty(engine, UnetFault(max_images=1)) as fault, pytest.raises(OutOfGpuMemory):
        engine.generate([request(catalog, 2, seed=1)])
    assert fault.images_per_call == [2]
    assert engine.oom.consecutive_failures == 1


def test_a_runtime_error_saying_out_of_memory_is_retried_and_others_are_not(catalog, engine):
    old_style = UnetFault(max_images=1, error=RuntimeError, message="CUDA error: out of memory")
    with faulty(engine, old_style):
        assert len(engine.generate([request(catalog, 2, seed=3)])[0].images) == 2
    assert old_style.images_per_call == [2, 1, 1]
    other = UnetFault(max_images=1, error=RuntimeError, message="cuDNN error: bad param")
    with faulty(engine, other), pytest.raises(RuntimeError, match="bad param"):
        engine.generate([request(catalog, 2, seed=3)])
    assert other.images_per_call == [2]  # not retried, not counted
    assert engine.oom.consecutive_failures == 0


def test_is_out_of_memory_knows_torch_spellings():
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20 MiB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(MemoryError())  # host memory: not the card's, not retried


def test_split_images_cuts_requests_at_image_boundaries(catalog):
    a, b = request(catalog, 3, seed=10), request(catalog, 2, seed=50)
    parts = split_images([a, b], start=2, size=2)
    assert [(index, part.n, part.seeds) for index, part in parts] == [(0, 1, (12,)), (1, 1, (50,))]
    whole = split_images([a, b], start=0, size=5)
    assert [part for _, part in whole] == [a, b]  # unsplit requests pass through as they are
