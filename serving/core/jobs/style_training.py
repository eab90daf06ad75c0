"""The ``style_training`` job: a private style trained from a tenant's own images.

Submitting (the ingress, or ``kiln styles train``), in an order that keeps the rule
"a request that fails validation charges nothing and stores nothing" (DESIGN.md §5):

1. ``check_request``: 5-50 images, name, model, captions, trigger word, steps (400).
2. ``decode_training_image`` per upload: its bytes against the limit before decoding,
   its pixel count (read from the header) before decompressing (413), then a full
   decode that refuses anything that is not an image (400).
3. ``submit_style_training``: price, reserve credits (402), and only then write the
   images (re-encoded as PNG: the worker never parses an upload) into the job's
   workspace and create the job row.

Price: the catalog's ``[prices] style_training``, except that a tenant's first private
style is free: a training is free when the tenant has no other training that succeeded
or is still queued or running (so a failed or cancelled first attempt keeps the next one
free; two submitted at once, the second pays). Credits are reserved at submission,
captured only when the style is registered, and released on failure or cancellation.

The work (``run_style_training``, on the job's worker): load the images, train with
``styles.training.train_lora`` reporting every step (and stopping there when cancelled),
check for a late cancel, then register the LoRA as the tenant's private style through
``Styles.import_file`` (the same checks as an uploaded LoRA) and capture the price.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from pipelines.params import ParamError
from serving.core.features import require_feature
from serving.core.image_inputs import ImageLimits, decode_image
from serving.core.jobs.runner import JobContext, workspace_of
from serving.core.jobs.service import Job, Jobs, new_job_id
from serving.core.ledger import Ledger
from serving.core.objects import style_object
from serving.core.settings import Settings
from serving.core.styles.service import StyleImport, Styles
from styles.record import StyleKind
from styles.training import (
    MAX_IMAGES,
    MIN_IMAGES,
    TrainingExample,
    TrainingParams,
    caption_with_trigger,
    train_lora,
)
from weights.catalog import Catalog
from weights.home import DIR_MODE, open_private, private_dir

logger = logging.getLogger(__name__)

KIND = "style_training"
MAX_CAPTION_CHARS = 1000
LORA_FILE = "lora.safetensors"


@dataclass(frozen=True)
class StyleTrainingRequest:
    """What a training asks for, besides the images."""

    name: str
    model: str
    trigger_word: str | None = None
    captions: tuple[str, ...] = ()  # none, one for every image, or one per image
    steps: int | None = None  # None: KILN_TRAINING_STEPS
    seed: int = 0


def check_request(
    request: StyleTrainingRequest, images: int, settings: Settings, catalog: Catalog
) -> StyleTrainingRequest:
    """The request with its defaults filled in; ``ParamError`` (400) naming the first bad
    field, ``UnknownModelError`` (404) for a model not in the catalog."""
    if not MIN_IMAGES <= images <= MAX_IMAGES:
        raise ParamError(
            "images", f"a style trains on {MIN_IMAGES}-{MAX_IMAGES} images, got {images}"
        )
    trigger = (request.trigger_word or "").strip() or None
    checked = StyleImport(
        request.name, request.model, StyleKind.PRIVATE, (trigger,) if trigger else ()
    )
    try:
        checked = checked.checked()
    except ParamError as exc:
        if exc.param == "trigger_words":
            raise ParamError("trigger_word", str(exc)) from None
        raise
    require_feature(catalog, catalog.get(request.model), "styles", "model")
    captions = tuple(c.strip() for c in request.captions)
    if len(captions) not in (0, 1, images):
        raise ParamError(
            "captions",
            f"give no caption, one for every image, or one per image ({images}); "
            f"got {len(captions)}",
        )
    if any(len(c) > MAX_CAPTION_CHARS for c in captions):
        raise ParamError("captions", f"a caption is at most {MAX_CAPTION_CHARS} characters")
    steps = settings.training_steps if request.steps is None else request.steps
    if not 1 <= steps <= settings.training_max_steps:
        raise ParamError(
            "steps", f"steps must be 1-{settings.training_max_steps} (KILN_TRAINING_MAX_STEPS)"
        )
    if not 0 <= request.seed < 2**32:
        raise ParamError("seed", "seed must be 0 to 2**32 - 1")
    return StyleTrainingRequest(checked.name, request.model, trigger, captions, steps, request.seed)


def decode_training_image(data: bytes, index: int, settings: Settings) -> Image.Image:
    """One uploaded image as RGB under the training limits: bytes checked before decoding
    and pixels before decompressing (``UploadTooLarge``), anything but a still PNG, JPEG
    or WebP refused (``UnsupportedImageFormat``, ``ParamError``), upright and in RGB as
    every input image (``serving.core.image_inputs``)."""
    limits = ImageLimits.training(settings)
    return decode_image(data, f"images[{index}]", settings, limits=limits)


def check_image_bytes(size: int, index: int, settings: Settings) -> None:
    """Refuse a training upload of ``size`` bytes over ``KILN_TRAINING_IMAGE_MAX_BYTES``
    (413), before it is read."""
    ImageLimits.training(settings).check_bytes(size, f"images[{index}]")


def training_price(jobs: Jobs, catalog: Catalog, tenant_id: str) -> int:
    """Credits this tenant's next training costs: 0 for its first private style."""
    earlier = jobs.count(tenant_id, KIND, ("queued", "running", "succeeded"))
    return 0 if earlier == 0 else catalog.price_of(KIND)


def submit_style_training(
    tenant_id: str,
    request: StyleTrainingRequest,
    images: Sequence[Image.Image],
    *,
    settings: Settings,
    catalog: Catalog,
    ledger: Ledger,
) -> Job:
    """Reserve the price (``InsufficientCredits``), stage the images, create the queued
    job. ``request`` must have passed ``check_request``. The caller submits the job to a
    runner; on any failure here nothing stays reserved or stored."""
    ledger.tenant(tenant_id)  # UnknownTenant before anything is held
    jobs = Jobs(ledger.engine)
    job_id = new_job_id()
    price = training_price(jobs, catalog, tenant_id)
    reservation = ledger.reserve(tenant_id, price, f"{KIND}:{job_id}") if price else None
    workspace = workspace_of(settings, job_id)
    try:
        private_dir(workspace.parent)
        workspace.mkdir(DIR_MODE)  # a fresh id: never there already
        files = []
        for index, image in enumerate(images):
            name = f"{index:03d}.png"
            with open_private(workspace / name) as out:  # a tenant's photos: 0600
                image.save(out, format="PNG")
            files.append(name)
        captions = list(request.captions)
        if len(captions) == 1:
            captions *= len(files)
        params = {
            "name": request.name,
            "model": request.model,
            "trigger_word": request.trigger_word,
            "images": files,
            "captions": captions or [""] * len(files),
            "steps": request.steps,
            "seed": request.seed,
            "rank": settings.training_rank,
            "learning_rate": settings.training_learning_rate,
        }
        return jobs.create(
            tenant_id,
            KIND,
            params,
            price=price,
            reservation_id=None if reservation is None else reservation.id,
            job_id=job_id,
        )
    except BaseException:
        shutil.rmtree(workspace, ignore_errors=True)
        if reservation is not None:
            ledger.release(reservation)
        raise


def run_style_training(ctx: JobContext) -> dict[str, Any]:
    """The job's work: train, then register the private style and capture the price."""
    from weights.tiny import ensure_tiny_models

    params = ctx.job.params
    spec = ctx.catalog.get(params["model"])
    ensure_tiny_models([spec])  # a no-op unless the model is a tiny one not built yet
    examples = []
    for name, caption in zip(params["images"], params["captions"], strict=True):
        with Image.open(ctx.workspace / name) as image:
            examples.append(
                TrainingExample(
                    image.convert("RGB"), caption_with_trigger(caption, params["trigger_word"])
                )
            )
    steps = params["steps"]
    ctx.report(step=0, total=steps, stage="loading")
    training = TrainingParams(
        steps=steps,
        rank=params["rank"],
        learning_rate=params["learning_rate"],
        seed=params["seed"],
    )

    def progress(step: int, total: int, loss: float) -> None:
        ctx.report(step=step, total=total, loss=round(loss, 6), stage="training")

    trained = train_lora(
        spec,
        examples,
        training,
        ctx.workspace / LORA_FILE,
        device=ctx.settings.engine_device,
        progress=progress,
    )
    ctx.check_cancelled()  # a cancel during the last step or the save still counts
    styles = Styles.from_settings(ctx.ledger.engine, ctx.catalog, ctx.settings)
    trigger = params["trigger_word"]
    record = styles.import_file(
        trained.path,
        StyleImport(params["name"], spec.id, StyleKind.PRIVATE, (trigger,) if trigger else ()),
        owner=ctx.job.tenant_id,
    )
    charged = ctx.capture(ctx.job.price)
    logger.info("job %s registered private style %s", ctx.job.id, record.id)
    return {
        "style_id": record.id,
        "style": style_object(record),
        "steps": trained.steps,
        "final_loss": trained.final_loss,
        "seconds": round(trained.seconds, 3),
        "credits_charged": charged,
    }
