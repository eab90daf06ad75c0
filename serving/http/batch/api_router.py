"""``POST /v1/batches``: a JSONL file of requests, rendered as a ``batch`` job.

The body is either a multipart upload (field ``file``, as OpenAI's batch upload, and an
optional ``skip_invalid`` field) or the JSONL itself with content type
``application/jsonl`` (also ``application/x-ndjson``, ``application/json-lines``), with
``skip_invalid`` in the query. The body is read here, not by FastAPI, so that its size is
checked as it arrives: ``Content-Length`` before a byte is read, the bytes read so far
while reading (413 over ``KILN_BATCH_MAX_BYTES``). Then, in this order, each refusal a
4xx in DESIGN.md §5's shape that stores nothing and charges nothing:

1. not UTF-8 (400, ``invalid_encoding``), no request line (400, ``empty_file``), more
   than ``KILN_BATCH_MAX_LINES`` lines (413, ``too_many_lines``);
2. every line checked by ``parse_batch`` exactly as ``kiln batch`` checks it, but with
   images only as base64 (a path would name a file of the server): any invalid line is
   a 400 (``invalid_lines``) naming the line numbers and why, unless ``skip_invalid``,
   which runs the valid lines and lists the skipped ones in the job's ``params``;
3. the checked lines are staged and the job is queued: 202 with the job (follow
   ``/v1/jobs/{id}``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from serving.core.app import KilnCore
from serving.core.batches.lines import BatchLine, InvalidLine
from serving.core.batches.submission import submit_batch
from serving.core.errors import KilnError
from serving.http.auth import TenantDep
from serving.http.batch.parsing import parse_batch
from serving.http.deps import CoreDep
from serving.http.jobs.protocol import JobObject

router = APIRouter(tags=["batches"])

JSONL_TYPES = ("application/jsonl", "application/x-ndjson", "application/json-lines")
# Room for the form's other field and multipart framing on top of the file itself.
_FORM_OVERHEAD = 64 * 1024
# Invalid lines explained, and numbered, in a 400's message.
MAX_NAMED_LINES = 20
MAX_NUMBERED_LINES = 200

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")

_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "JSONL, one request a line in the native JSON shape with a "
            '`kind` ("generation", "edit", "agentic"); images as base64',
        },
        "skip_invalid": {
            "type": "boolean",
            "description": "run the valid lines when some are invalid (default: refuse)",
        },
    },
}
_JSONL_SCHEMA: dict[str, Any] = {"type": "string", "description": "the JSONL itself"}


@router.post(
    "/v1/batches",
    status_code=202,
    response_model=JobObject,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _BODY_SCHEMA},
                **{media: {"schema": _JSONL_SCHEMA} for media in JSONL_TYPES[:2]},
            },
        },
        "parameters": [
            {
                "name": "skip_invalid",
                "in": "query",
                "required": False,
                "schema": {"type": "boolean"},
                "description": "run the valid lines when some are invalid (default: refuse)",
            }
        ],
    },
)
async def create_batch(request: Request, state: CoreDep, tenant: TenantDep) -> JSONResponse:
    """Render a JSONL of requests as a ``batch`` job (202 and the job).

    Each line is one request of ``POST /v1/generations``, ``/v1/edits`` or
    ``/v1/agentic/generations`` with a ``kind`` field; each is charged as that route
    charges it when it runs, and its images become the caller's assets. The job's
    ``progress`` has ``images_done``, ``images_total``, ``images_per_s`` and ``eta_s``;
    its ``result`` lists every line with its ``asset_ids``, ``seeds`` and ``error``. A
    failed line does not stop the batch."""
    settings = state.settings
    skip_query = request.query_params.get("skip_invalid")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    filename = None
    if media == "multipart/form-data":
        body = await _read_body(request, settings.batch_max_bytes + _FORM_OVERHEAD)
        data, filename, skip_form = await _read_form(request, body, settings.batch_max_bytes)
        skip = _flag(skip_form if skip_form is not None else skip_query)
    elif media in JSONL_TYPES:
        data = await _read_body(request, settings.batch_max_bytes)
        skip = _flag(skip_query)
    else:
        raise KilnError(
            400,
            "send the JSONL as a multipart file field `file`, or as the body with "
            f"content type application/jsonl (got {media or 'none'!r})",
            param="file",
            code="invalid_content_type",
        )
    text = _text(data)
    count = sum(1 for line in text.splitlines() if line.strip())
    if count == 0:
        raise KilnError(400, "the file has no request lines", param="file", code="empty_file")
    if count > settings.batch_max_lines:
        raise KilnError(
            413,
            f"the file has {count} request lines, over {settings.batch_max_lines} "
            "(KILN_BATCH_MAX_LINES)",
            param="file",
            code="too_many_lines",
        )
    lines, invalid = await asyncio.to_thread(
        parse_batch, text, base_dir=None, catalog=state.catalog, settings=settings
    )
    if invalid and not skip:
        raise _invalid_lines(invalid)
    if not lines:
        raise KilnError(
            400, f"no valid request line: {_named(invalid)}", param="file", code="invalid_lines"
        )
    job = await asyncio.to_thread(_submit, state, tenant.id, lines, invalid, filename)
    body_json = JobObject.of(job).model_dump(mode="json")
    return JSONResponse(body_json, status_code=202, headers={"location": f"/v1/jobs/{job.id}"})


def _submit(
    state: KilnCore,
    tenant_id: str,
    lines: list[BatchLine],
    skipped: list[InvalidLine],
    filename: str | None,
) -> Any:
    job = submit_batch(state.settings, state.ledger, tenant_id, lines, skipped, filename)
    state.job_runner.submit(job)
    return job


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes: by its ``Content-Length``
    before reading, else as soon as that many bytes have arrived."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(f"the request is {length} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"the request is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_form(
    request: Request, body: bytes, limit: int
) -> tuple[bytes, str | None, str | None]:
    """The ``file`` field's bytes, its name and the ``skip_invalid`` field of a multipart
    ``body`` (already read and size-checked)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, receive).form(max_files=1, max_fields=8)
    try:
        upload = form.get("file")
        if upload is None:
            raise KilnError(400, "the JSONL file field `file` is required", param="file",
                           code="invalid_value")  # fmt: skip
        if not isinstance(upload, UploadFile):
            raise KilnError(400, "`file` must be a file field", param="file", code="invalid_value")
        if upload.size is not None and upload.size > limit:
            raise _too_large(f"the file is {upload.size} bytes")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise _too_large(f"the file is over {limit} bytes")
        skip = form.get("skip_invalid")
        if skip is not None and not isinstance(skip, str):
            raise KilnError(400, "skip_invalid must be a text field", param="skip_invalid",
                           code="invalid_value")  # fmt: skip
        return data, upload.filename, skip
    finally:
        await form.close()


def _too_large(what: str) -> KilnError:
    return KilnError(413, f"{what}; a batch upload is at most the KILN_BATCH_MAX_BYTES limit",
                    param="file", code="upload_too_large")  # fmt: skip


def _flag(value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise KilnError(400, f"skip_invalid must be true or false, not {value!r}",
                   param="skip_invalid", code="invalid_value")  # fmt: skip


def _text(data: bytes) -> str:
    """The upload as text: UTF-8 (a byte-order mark is allowed), else 400."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KilnError(
            400,
            f"the file is not UTF-8 text (byte {exc.start}); JSONL is UTF-8",
            param="file",
            code="invalid_encoding",
        ) from None


def _named(invalid: list[InvalidLine]) -> str:
    named = "; ".join(line.message for line in invalid[:MAX_NAMED_LINES])
    more = len(invalid) - MAX_NAMED_LINES
    return named + (f"; and {more} more" if more > 0 else "")


def _invalid_lines(invalid: list[InvalidLine]) -> KilnError:
    numbers = ", ".join(str(line.number) for line in invalid[:MAX_NUMBERED_LINES])
    if len(invalid) > MAX_NUMBERED_LINES:
        numbers += ", …"
    plural = "s" if len(invalid) > 1 else ""
    return KilnError(
        400,
        f"invalid line{plural} {numbers}; nothing was run (send skip_invalid=true to run "
        f"the rest): {_named(invalid)}",
        param="file",
        code="invalid_lines",
    )
