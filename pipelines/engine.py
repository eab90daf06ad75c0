"""One engine per loaded base model: text-to-image now, sibling tasks via ``from_pipe``.

    engine = Engine.load(spec, device="auto")   # once per replica
    outputs = engine.generate([params, ...])    # one GenerationOutput per params, in order

``generate`` takes requests that share one ``GenerationParams.batch_key`` (DESIGN.md §3)
and runs them in as few pipeline calls as possible. It is blocking torch work: callers on
an event loop run it in a thread, one call at a time per engine.

Per-call state on the shared modules (the scheduler, the active LoRA style and its
strength) is set at the start of every call, so nothing leaks from one call into the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from pipelines.schedulers import make_scheduler
from pipelines.style_adapters import DEFAULT_CAPACITY, StyleAdapters
from weights.catalog import ModelSpec
from weights.devices import select_device, select_dtype
from weights.loading import load_pipeline

logger = logging.getLogger(__name__)


class Engine:
    """A loaded base model and the pipelines derived from it."""

    def __init__(self, spec: ModelSpec, pipe: Any, style_capacity: int = DEFAULT_CAPACITY) -> None:
        from pipelines.prompt_weighting import PromptEncoder

        self.spec = spec
        self.pipe = pipe
        self.device = pipe.device
        self.prompt_encoder = PromptEncoder(pipe)
        self._scheduler_config = pipe.scheduler.config
        self._schedulers: dict[str, Any] = {}
        self._siblings: dict[str, Any] = {"text_to_image": pipe}
        # Adapters live on the shared UNet and text encoders: siblings see them too.
        self.styles = StyleAdapters(pipe, style_capacity)

    @classmethod
    def load(
        cls, spec: ModelSpec, device: str | None = None, style_capacity: int = DEFAULT_CAPACITY
    ) -> Engine:
        """Load ``spec`` once on ``device`` (``auto``: CUDA when present) in its serving dtype;
        keep up to ``style_capacity`` LoRA styles loaded on it."""
        device = select_device(device or "auto")
        dtype = select_dtype(device)
        started = time.perf_counter()
        # No channels-last here: measured 1-12% slower than diffusers' default layout for
        # SDXL/SD 1.5 in bf16 on an H200 (benchmarks/RESULTS.md, 2026-11-26).
        pipe = load_pipeline(spec, device, dtype)
        logger.info(
            "loaded %s on %s (%s) in %.2fs", spec.id, device, dtype, time.perf_counter() - started
        )
        return cls(spec, pipe, style_capacity)

    def pipeline(self, task: str) -> Any:
        """The pipeline for ``task``, derived from the loaded one so weights are shared."""
        try:
            return self._siblings[task]
        except KeyError:
            raise KeyError(
                f"task {task!r} is not available on {self.spec.id!r}; "
                f"available: {', '.join(self._siblings)}"
            ) from None

    def scheduler(self, name: str) -> Any:
        if name not in self._schedulers:
            self._schedulers[name] = make_scheduler(name, self._scheduler_config)
        return self._schedulers[name]

    def text_to_image(self, params: GenerationParams) -> GenerationOutput:
        """One request alone."""
        return self.generate([params])[0]

    def generate(self, requests: Sequence[GenerationParams]) -> list[GenerationOutput]:
        """Run requests that share one batch key; results in request order.

        Requests are sub-grouped by how many 77-token windows their prompts need, so a
        short prompt is never padded because a long one shares its call: every image is
        the same as if its request had run alone.
        """
        if not requests:
            return []
        key = requests[0].batch_key
        if any(r.batch_key != key for r in requests):
            raise ValueError("Engine.generate needs requests that share one batch key")
        if key.model != self.spec.id:
            raise ValueError(f"requests for {key.model!r} sent to the engine of {self.spec.id!r}")
        groups: dict[int, list[int]] = {}
        for index, request in enumerate(requests):
            windows = max(
                self.prompt_encoder.chunk_count(request.prompt),
                self.prompt_encoder.chunk_count(request.negative_prompt),
            )
            groups.setdefault(windows, []).append(index)
        outputs: list[GenerationOutput | None] = [None] * len(requests)
        for indices in groups.values():
            group = [requests[i] for i in indices]
            for index, output in zip(indices, self._run(group), strict=True):
                outputs[index] = output
        return outputs  # type: ignore[return-value]

    def _run(self, requests: list[GenerationParams]) -> list[GenerationOutput]:
        import torch

        first = requests[0]
        prompts = [r.prompt for r in requests for _ in range(r.n)]
        negatives = [r.negative_prompt for r in requests for _ in range(r.n)]
        seeds = [seed for r in requests for seed in r.seeds]
        # CPU generators: the same seed gives the same initial noise on every device.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        pipe = self.pipeline(first.task)
        pipe.scheduler = self.scheduler(first.scheduler)
        self.styles.activate(first.style)  # before prompts: styles may patch text encoders

        started = time.perf_counter()
        with torch.inference_mode():
            embeds = self.prompt_encoder.encode(prompts, negatives)
            encoded = self._sync_time()
            marks: dict[str, float] = {}

            def on_step_end(_pipe: Any, step: int, _t: Any, kwargs: dict) -> dict:
                if step == first.steps - 1:
                    marks["denoised"] = self._sync_time()
                return kwargs

            result = pipe(
                **embeds,
                height=first.height,
                width=first.width,
                num_inference_steps=first.steps,
                guidance_scale=first.guidance,
                generator=generators,
                output_type="pt",
                callback_on_step_end=on_step_end,
            )
        finished = self._sync_time()
        denoised = marks.get("denoised", finished)
        timings = {
            "encode": encoded - started,
            "denoise": denoised - encoded,
            "decode": finished - denoised,
            "total": finished - started,
            "batch_images": float(len(seeds)),
        }
        images = to_uint8(result.images)
        outputs, offset = [], 0
        for request in requests:
            batch = images[offset : offset + request.n]
            outputs.append(GenerationOutput(list(batch), request.seeds, dict(timings)))
            offset += request.n
        return outputs

    def _sync_time(self) -> float:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def to_uint8(images: Any) -> np.ndarray:
    """(B, 3, H, W) floats in [0, 1] -> (B, H, W, 3) uint8, converted where they are.

    On a GPU this quarters the bytes copied to the host and keeps the arithmetic off the
    CPU (0.1-0.3 s for 8 SDXL images otherwise). Rounds as diffusers' ``numpy_to_pil``.
    """
    import torch

    pixels = (images * 255).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()
