"""One engine per loaded model: text-to-image and its sibling tasks via ``from_pipe``.

    engine = Engine.load(spec, device="auto")   # once per replica
    outputs = engine.generate([params, ...])    # one GenerationOutput per params, in order

A base model serves ``text_to_image`` with the loaded pipeline and derives the others on
first use with ``from_pipe``, which shares every module (no weights are copied):
``image_to_image`` (reference images, recreate), ``inpaint`` (replace, recreate, erase),
``instruct`` where its family's base model edits by instruction (FLUX.2 [klein]) and
``controlnet`` (one sibling per ControlNet component, the ControlNet loaded once).
An ``instruct`` model (InstructPix2Pix, FLUX.1 Kontext) serves ``instruct`` only, an
``inpaint`` model (SD inpainting, FLUX.1 Fill) ``inpaint``. What
each task's call takes and how its pipeline is derived is its module's, in
``pipelines/tasks/``; the engine looks the task up in ``pipelines.tasks.RUNNERS``.

``generate`` takes requests that share one ``GenerationParams.batch_key`` (DESIGN.md §3)
and runs them in as few pipeline calls as possible (a call that runs out of CUDA memory is
run again with half the images, ``pipelines.oom``). It is blocking torch work: callers on
an event loop run it in a thread, one call at a time per engine.

The family (``pipelines/families``) says what differs: FLUX calls get their prompts
padded to the model's sequence length (a prompt past it is refused by ``check`` before
anything runs), its guidance as the transformer takes it, and FLUX.1's img2img the call's
size.

Per-call state on the shared modules (the scheduler, the active LoRA style and its
strength) is set at the start of every call, so nothing leaks from one call into the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.call_overhead import trim_call_overhead
from pipelines.families import LOADED_TASK, load_pipeline
from pipelines.loaded_model import LoadedModel
from pipelines.oom import OomRecovery, split_images
from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from pipelines.previews import PreviewDecoder, encode_preview, previews_at
from pipelines.progress import CallCancelled, CallListener, StepEvent
from pipelines.schedulers import make_scheduler
from pipelines.style_adapters import DEFAULT_CAPACITY, StyleAdapters
from pipelines.task import Task
from pipelines.tasks import RUNNERS, runner
from weights.catalog import ComponentSpec, ModelKind, ModelSpec
from weights.devices import select_device, select_dtype

if TYPE_CHECKING:
    from pipelines.fast_path import FastPathOptions, FastPathReport

logger = logging.getLogger(__name__)


class Engine(LoadedModel):
    """A loaded base model and the pipelines derived from it."""

    def __init__(
        self,
        spec: ModelSpec,
        pipe: Any,
        style_capacity: int = DEFAULT_CAPACITY,
        components: Sequence[ComponentSpec] = (),
    ) -> None:
        super().__init__(spec, pipe, components)
        # What diffusers would work out again on every call, worked out once.
        trim_call_overhead(pipe)
        # The family's prompt encoding (CLIP emphasis and 75-token windows for SD; T5 or
        # Qwen3 padded to the model's sequence length for FLUX).
        self.prompt_encoder = self.family.prompt_encoder(pipe, self.family.sequence_length_of(spec))
        self._scheduler_config = pipe.scheduler.config
        self._schedulers: dict[str, Any] = {}
        # Task (and variant: ``task:component``) -> its pipeline.
        self._siblings: dict[str, Any] = {LOADED_TASK[spec.kind]: pipe}
        # Step previews' decoder (pipelines.previews), made when a call first asks.
        self._preview_decoder: PreviewDecoder | None = None
        self._preview_decoder_made = False
        # Adapters live on the shared denoiser and text encoders: siblings see them too.
        self.styles = StyleAdapters(pipe, style_capacity, self.family.denoiser)
        # What the GPU fast path applied, when ``load`` was given one.
        self.fast_path_report: FastPathReport | None = None
        # CUDA out-of-memory: retried with fewer images a call; failures counted for the
        # replica's health check (pipelines.oom).
        self.oom = OomRecovery()

    @classmethod
    def load(
        cls,
        spec: ModelSpec,
        device: str | None = None,
        style_capacity: int = DEFAULT_CAPACITY,
        components: Sequence[ComponentSpec] = (),
        fast_path: FastPathOptions | None = None,
    ) -> Engine:
        """Load ``spec`` once on ``device`` (``auto``: CUDA when present) in its serving dtype;
        keep up to ``style_capacity`` LoRA styles loaded on it; ``components`` are the
        catalog's ControlNets and IP-Adapters (loaded on first use); ``fast_path``: the
        GPU fast path's options (pipelines/fast_path.py), applied and warmed up here."""
        device = select_device(device or "auto")
        dtype = select_dtype(device)
        started = time.perf_counter()
        # No channels-last here: measured 1-12% slower than diffusers' default layout for
        # SDXL/SD 1.5 in bf16 on an H200 (benchmarks/RESULTS.md, 2026-11-26).
        pipe = load_pipeline(spec, device, dtype)
        logger.info(
            "loaded %s on %s (%s) in %.2fs", spec.id, device, dtype, time.perf_counter() - started
        )
        engine = cls(spec, pipe, style_capacity, components)
        if fast_path is not None:
            from pipelines.fast_path import apply_fast_path

            engine.fast_path_report = apply_fast_path(engine, fast_path)
        return engine

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The tasks this engine can run: its kind's, and on a base model those it derives
        that its family has a pipeline for (ControlNet where a ControlNet component fits)."""
        loaded = LOADED_TASK[self.spec.kind]
        if self.spec.kind != ModelKind.BASE:
            return (loaded,)
        derived = [
            task
            for task, run in RUNNERS.items()
            if run.derive is not None
            and task in self.family.pipelines
            and (run.needs is None or self.components_of(run.needs))
        ]
        return (loaded, *derived)

    def pipeline(self, task: Task, variant: str | None = None) -> Any:
        """The pipeline for ``task`` (``variant``: the ControlNet component of a
        ``controlnet`` call), derived from the loaded one on first use; weights shared."""
        key = task if variant is None else f"{task}:{variant}"
        if key in self._siblings:
            return self._siblings[key]
        if task not in self.tasks:
            raise KeyError(
                f"task {str(task)!r} is not available on {self.spec.id!r}; "
                f"available: {', '.join(self.tasks)}"
            )
        self._siblings[key] = self._derive(task, variant)
        return self._siblings[key]

    def _derive(self, task: Task, variant: str | None) -> Any:
        derive = runner(task).derive
        if derive is None:
            raise KeyError(f"task {str(task)!r} is not derived from a base model")
        derived = derive(self, self._siblings[Task.TEXT_TO_IMAGE], variant)
        # SDXL's own watermarker comes back with every derived SDXL pipeline.
        if getattr(derived, "watermark", None) is not None:
            derived.watermark = None
        derived.set_progress_bar_config(disable=True)
        trim_call_overhead(derived)
        logger.info("derived %s pipeline %s on %s", task, type(derived).__name__, self.spec.id)
        return derived

    def scheduler(self, name: str) -> Any:
        if name not in self._schedulers:
            self._schedulers[name] = make_scheduler(
                name, self._scheduler_config, self.family.schedulers_of(self.spec)
            )
        return self._schedulers[name]

    def check(self, params: GenerationParams) -> None:
        """Refuse a request whose prompts the model's encoder would cut (``ParamError``
        naming ``prompt`` or ``negative_prompt``): T5 and Qwen3 are counted here, with the
        model's tokenizer, before anything runs. Callers that batch check each request
        alone first, so one bad prompt does not fail its neighbours."""
        self.prompt_encoder.check(params.prompt, "prompt")
        if params.negative_prompt:
            self.prompt_encoder.check(params.negative_prompt, "negative_prompt")

    def text_to_image(self, params: GenerationParams) -> GenerationOutput:
        """One request alone."""
        return self.generate([params])[0]

    def generate(
        self, requests: Sequence[GenerationParams], listener: CallListener | None = None
    ) -> list[GenerationOutput]:
        """Run requests that share one batch key; results in request order.

        Requests are sub-grouped by how many encoder windows their prompts need (77 tokens
        each on CLIP), so a
        short prompt is never padded because a long one shares its call: every image is
        the same as if its request had run alone.

        ``listener`` (``pipelines.progress``) hears every step and may cancel requests: a
        cancelled request's output holds only the images of its calls that finished
        before the cancel, and says ``cancelled``.
        """
        if not requests:
            return []
        began = time.perf_counter()
        key = requests[0].batch_key
        if any(r.batch_key != key for r in requests):
            raise ValueError("Engine.generate needs requests that share one batch key")
        if key.model != self.spec.id:
            raise ValueError(f"requests for {key.model!r} sent to the engine of {self.spec.id!r}")
        for request in requests:
            self.check(request)
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
            run = self._calls_of(group, indices, listener)
            outputs_of_group = self.oom.run_fitting(run, group, self.device)
            for index, output in zip(indices, outputs_of_group, strict=True):
                output.cancelled = listener is not None and listener.cancelled(index)
                outputs[index] = output
        # The whole of this method, checks and conversions included (``total`` is the
        # pipeline calls'): what the serving path's overhead figures are measured against.
        elapsed = time.perf_counter() - began
        for output in outputs:
            output.timings["engine"] = elapsed  # type: ignore[union-attr]
        return outputs  # type: ignore[return-value]

    def _calls_of(
        self, group: list[GenerationParams], indices: list[int], listener: CallListener | None
    ) -> Callable[[list[GenerationParams]], list[GenerationOutput]]:
        """``_run`` for ``run_fitting`` over ``group``, knowing each part's request: the
        out-of-memory retry cuts requests into parts in image order, so the images
        attempted so far say which requests a call's parts belong to."""
        attempted = 0
        finished = [0] * len(group)  # images of each request that calls finished

        def run(parts: list[GenerationParams]) -> list[GenerationOutput]:
            nonlocal attempted
            size = sum(part.n for part in parts)
            placed = [i for i, _ in split_images(group, attempted, size)]
            outputs = self._run(
                parts, [indices[i] for i in placed], [finished[i] for i in placed], listener
            )
            attempted += size
            for i, output in zip(placed, outputs, strict=True):
                finished[i] += len(output.images)
            return outputs

        return run

    def _run(
        self,
        requests: list[GenerationParams],
        members: Sequence[int] = (),
        images_done: Sequence[int] = (),
        listener: CallListener | None = None,
    ) -> list[GenerationOutput]:
        """One pipeline call; ``members`` are the requests' indices for ``listener``,
        ``images_done`` the images earlier calls made for each."""
        import torch

        def all_cancelled() -> bool:
            return listener is not None and all(listener.cancelled(m) for m in members)

        if all_cancelled():
            # Nobody waits for any image of this call (a later part of a split request).
            return [GenerationOutput([], ()) for _ in requests]

        first = requests[0]
        prompts = [r.prompt for r in requests for _ in range(r.n)]
        negatives = [r.negative_prompt for r in requests for _ in range(r.n)]
        seeds = [seed for r in requests for seed in r.seeds]
        # CPU generators: the same seed gives the same initial noise on every device.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        pipe = self.pipeline(first.task.name, first.task.variant)
        scheduler = self.scheduler(first.scheduler)
        if pipe.scheduler is not scheduler:
            # Assigning a pipeline component re-registers the pipeline's config (~0.3 ms
            # on a CPU): only when the call's scheduler differs from the last one's.
            pipe.scheduler = scheduler
        self.styles.activate(first.style)  # before prompts: styles may patch text encoders
        task_kwargs = runner(first.task.name).call(
            [r.task for r in requests],
            [r.n for r in requests],
            first.width,
            first.height,
            self.family,
        )
        if self.family.sized_image_calls:
            task_kwargs.setdefault("height", first.height)
            task_kwargs.setdefault("width", first.width)
        if first.adapter is not None or self.ip_adapter_loaded is not None:
            # IP-Adapter scales and embeddings are set for every call (none: scale 0).
            from pipelines.ip_adapter import adapter_call_kwargs

            task_kwargs.update(
                adapter_call_kwargs(self, first.adapter, len(seeds), guidance=first.guidance)
            )

        started = time.perf_counter()
        with torch.inference_mode():
            embeds = self.prompt_encoder.encode(prompts, negatives)
            encoded = self._sync_time()
            marks: dict[str, float] = {}

            def on_step_end(pipe_: Any, step: int, _t: Any, kwargs: dict) -> dict:
                # Image tasks run fewer steps than asked (strength): the pipeline knows.
                total = getattr(pipe_, "num_timesteps", first.steps)
                if step == total - 1:
                    marks["denoised"] = self._sync_time()
                if listener is not None:
                    previews = self._previews(pipe_, kwargs["latents"], requests, step)
                    for k, member in enumerate(members):
                        event = StepEvent(
                            member, step + 1, total, images_done[k], requests[k].n, previews[k]
                        )
                        listener.on_step(event)
                    if all_cancelled():
                        raise CallCancelled()  # stop here: nothing is decoded
                return kwargs

            try:
                result = pipe(
                    **embeds,
                    **task_kwargs,
                    num_inference_steps=first.steps,
                    guidance_scale=first.guidance,
                    generator=generators,
                    output_type="pt",
                    callback_on_step_end=on_step_end,
                )
            except CallCancelled:
                logger.info("call of %d request(s) cancelled by all of them", len(requests))
                return [GenerationOutput([], ()) for _ in requests]
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
        for k, request in enumerate(requests):
            batch = images[offset : offset + request.n]
            offset += request.n
            if listener is not None and listener.cancelled(members[k]):
                # Cancelled while the call ran on for others: nobody takes these images.
                outputs.append(GenerationOutput([], (), dict(timings)))
                continue
            outputs.append(GenerationOutput(list(batch), request.seeds, dict(timings)))
        return outputs

    @property
    def preview_decoder(self) -> PreviewDecoder | None:
        """What decodes this model's step previews (None: nothing fits; logged once)."""
        if not self._preview_decoder_made:
            self._preview_decoder = PreviewDecoder.for_model(self)
            self._preview_decoder_made = True
        return self._preview_decoder

    def _previews(
        self, pipe: Any, latents: Any, requests: list[GenerationParams], step: int
    ) -> list[list[bytes] | None]:
        """Each request's step previews after ``step`` (0-based): WebPs of its images
        where it asks for one at this step (``preview_every``), else None. One decode
        for the requests that ask, whichever they are in the call."""
        asked = [previews_at(step, r.preview_every) for r in requests]
        decoder = self.preview_decoder if any(asked) else None
        if decoder is None:
            return [None] * len(requests)
        rows, offset = [], 0
        for request, wants in zip(requests, asked, strict=True):
            if wants:
                rows.extend(range(offset, offset + request.n))
            offset += request.n
        first = requests[0]
        pixels = iter(decoder.pixels(pipe, latents[rows], first.height, first.width))
        return [
            [encode_preview(next(pixels)) for _ in range(r.n)] if wants else None
            for r, wants in zip(requests, asked, strict=True)
        ]

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
