"""CUDA out-of-memory recovery: retry a pipeline call with half the images.

A batch that does not fit the card (a big ``n``, a large size, a fragmented cache) is not
a failed request: ``run_fitting`` catches the out-of-memory error, empties the CUDA
cache and runs the same images again in calls of half as many, down to one image a call.
Images, not requests, are split: a request with ``n=8`` may run as two calls of 4 with
its own seeds, so it gets the same images (within the batch-size rounding of
``test_image_i_of_a_batch_is_reproduced_alone_by_its_seed``) as one call of 8. Once a
size fits, the rest of the batch runs at that size; a later out-of-memory halves again,
and images already made are kept.

If one image alone still runs out of memory the call fails with ``OutOfGpuMemory``,
which the HTTP side answers as 503 ``out_of_memory`` with ``retry-after``.

``OomRecovery`` also counts consecutive failed calls (each pipeline call group that ends
in ``OutOfGpuMemory`` counts once, however many requests shared it: one batch that cannot
fit even at one image says as much about the replica as one request); a success resets
the count. The Serve replica's health check fails once the count reaches
``KILN_OOM_MAX_FAILURES``, so Serve replaces a replica whose memory is in a bad state.
With retry turned off (``KILN_OOM_RETRY=0``) the first out-of-memory fails the call at
once (and still counts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 10.0


class OutOfGpuMemory(RuntimeError):
    """A call that runs out of GPU memory even at one image a call (or with retry off)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's out-of-memory error, in any of its spellings.

    ``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError`` is the same class) on
    recent torch; older kernels and some extensions raise a plain ``RuntimeError``
    whose message says "out of memory".
    """
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_cached_memory(device: Any) -> None:
    """Return the CUDA caching allocator's free blocks to the driver, so the retry can
    allocate contiguous memory the failed call left fragmented."""
    import torch

    if getattr(device, "type", str(device)).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def split_images(
    requests: Sequence[GenerationParams], start: int, size: int
) -> list[tuple[int, GenerationParams]]:
    """The images ``start`` to ``start + size`` of ``requests`` (in order, counted over
    all their images) as sub-requests: (index of the request, the request cut to those
    images and their seeds)."""
    parts: list[tuple[int, GenerationParams]] = []
    offset = 0
    end = start + size
    for index, request in enumerate(requests):
        lo, hi = max(start, offset), min(end, offset + request.n)
        if lo < hi:
            seeds = request.seeds[lo - offset : hi - offset]
            whole = len(seeds) == request.n
            parts.append((index, request if whole else replace(request, n=len(seeds), seeds=seeds)))
        offset += request.n
    return parts


@dataclass
class _Collected:
    images: list[Any]
    seeds: list[int]
    timings: dict[str, float]


class OomRecovery:
    """Out-of-memory retry policy and the replica's count of consecutive failures."""

    def __init__(self, retry: bool = True) -> None:
        self.retry = retry
        self.consecutive_failures = 0
        self.halvings = 0  # calls retried smaller since the engine loaded (for logs/tests)

    def run_fitting(
        self,
        run: Callable[[list[GenerationParams]], list[GenerationOutput]],
        requests: list[GenerationParams],
        device: Any,
    ) -> list[GenerationOutput]:
        """``run(requests)``, split into calls of fewer images while it runs out of memory.

        ``run`` is one pipeline call over requests that share a batch key; outputs are
        merged back per request, in order. Timings are summed over a request's calls,
        ``batch_images`` is the most images one of those calls held.
        """
        try:
            outputs = self._run_fitting(run, requests, device)
        except OutOfGpuMemory:
            self.consecutive_failures += 1
            raise
        self.consecutive_failures = 0
        return outputs

    def _run_fitting(
        self,
        run: Callable[[list[GenerationParams]], list[GenerationOutput]],
        requests: list[GenerationParams],
        device: Any,
    ) -> list[GenerationOutput]:
        total = sum(r.n for r in requests)
        collected = [_Collected([], [], {}) for _ in requests]
        size, done = total, 0
        while done < total:
            parts = split_images(requests, done, size)
            try:
                outputs: list[GenerationOutput] | None = run([part for _, part in parts])
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                if not self.retry or size == 1:
                    free_cached_memory(device)
                    # from None: a chained traceback would keep the failed call's frames,
                    # and their tensors, alive while the error travels back.
                    raise OutOfGpuMemory(
                        f"out of GPU memory: {size} image(s) of "
                        f"{requests[0].width}x{requests[0].height} do not fit ({exc})"
                    ) from None
                logger.warning("out of GPU memory at %d image(s) a call: %s", size, exc)
                outputs = None
            if outputs is None:
                # Outside the except block: the failed call's frames are released by now,
                # so emptying the cache gives their memory back.
                free_cached_memory(device)
                size = (size + 1) // 2
                self.halvings += 1
                continue
            for (index, _), output in zip(parts, outputs, strict=True):
                _collect(collected[index], output)
            done += sum(part.n for _, part in parts)
        return [GenerationOutput(c.images, tuple(c.seeds), c.timings) for c in collected]


def _collect(into: _Collected, output: GenerationOutput) -> None:
    into.images.extend(output.images)
    into.seeds.extend(output.seeds)
    for name, value in output.timings.items():
        if name == "batch_images":
            into.timings[name] = max(into.timings.get(name, 0.0), value)
        else:
            into.timings[name] = into.timings.get(name, 0.0) + value
