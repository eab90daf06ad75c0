"""``POST /v1/styles/train``: train a private style from 5-50 images, as a job.

The body guard (``serving.http.body_guard``) has authenticated the caller and holds the body
to ``KILN_BODY_MAX_TRAINING`` (each file to ``KILN_TRAINING_IMAGE_MAX_BYTES``) as it
streams. The form is parsed here rather than by FastAPI's ``File``/``Form`` parameters so
that the request's fields are checked before any image is decoded, each image's size
before it is decoded and its pixel count before it is decompressed
(``serving.core.jobs.style_training``). Validation, then credits, then storage: a refused
request charges nothing and stores nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from pipelines.params import ParamError
from serving.core.app import KilnCore
from serving.core.jobs.style_training import (
    StyleTrainingRequest,
    check_image_bytes,
    check_request,
    decode_training_image,
    submit_style_training,
)
from serving.http.auth import TenantDep
from serving.http.deps import CoreDep
from serving.http.jobs.protocol import JobObject
from styles.training import MAX_IMAGES

router = APIRouter(tags=["styles"])

_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["images", "name", "model"],
    "properties": {
        "images": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "5-50 training images (PNG, JPEG, WebP, …): repeat the field",
        },
        "name": {"type": "string", "description": "the style's name"},
        "model": {"type": "string", "description": "the catalog model to train for"},
        "captions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "none, one for every image, or one per image in order",
        },
        "trigger_word": {"type": "string", "description": "put first in every caption"},
        "steps": {"type": "integer", "description": "training steps (KILN_TRAINING_STEPS)"},
        "seed": {"type": "integer", "description": "training seed (default 0)"},
    },
}


@router.post(
    "/v1/styles/train",
    status_code=202,
    response_model=JobObject,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": _BODY_SCHEMA}},
        }
    },
)
async def train_style(request: Request, core: CoreDep, tenant: TenantDep) -> JSONResponse:
    """Start training a private style (202 and the job; follow ``/v1/jobs/{id}``).

    On success the job's result names the new style (``style_id``), owned by the caller
    alone. Price: the catalog's ``style_training``, charged only on success; a tenant's
    first private style is free."""
    settings = core.settings
    form = await request.form(max_files=MAX_IMAGES + 1, max_fields=MAX_IMAGES + 16)
    try:
        uploads = form.getlist("images")
        if any(not isinstance(u, UploadFile) for u in uploads):
            raise ParamError("images", "images must be files (multipart file fields)")
        training = check_request(_training_request(form), len(uploads), settings, core.catalog)
        for index, upload in enumerate(uploads):
            if upload.size is not None:
                check_image_bytes(upload.size, index, settings)
        images = []
        for index, upload in enumerate(uploads):
            data = await upload.read(settings.training_image_max_bytes + 1)
            images.append(await asyncio.to_thread(decode_training_image, data, index, settings))
    finally:
        await form.close()
    job = await asyncio.to_thread(_submit, core, tenant.id, training, images)
    body = JobObject.of(job).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"location": f"/v1/jobs/{job.id}"})


def _submit(core: KilnCore, tenant_id: str, training: StyleTrainingRequest, images: list) -> Any:
    job = submit_style_training(
        tenant_id,
        training,
        images,
        settings=core.settings,
        catalog=core.catalog,
        ledger=core.ledger,
    )
    core.job_runner.submit(job)
    return job


def _training_request(form: Any) -> StyleTrainingRequest:
    def text(name: str, required: bool = False) -> str | None:
        value = form.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise ParamError(name, f"{name} is required")
            return None
        if not isinstance(value, str):
            raise ParamError(name, f"{name} must be a text field, not a file")
        return value

    def integer(name: str) -> int | None:
        value = text(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise ParamError(name, f"{name} must be a whole number") from None

    captions = form.getlist("captions")
    if any(not isinstance(c, str) for c in captions):
        raise ParamError("captions", "captions must be text fields")
    return StyleTrainingRequest(
        name=text("name", required=True) or "",
        model=text("model", required=True) or "",
        trigger_word=text("trigger_word"),
        captions=tuple(captions),
        steps=integer("steps"),
        seed=integer("seed") or 0,
    )
