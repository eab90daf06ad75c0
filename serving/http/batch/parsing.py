"""Parsing a batch file (JSONL): one request a line, checked with the routes' own request
classes before anything runs; the lines are the core's values
(``serving.core.batches.lines``).

Each line is a JSON object in the native request shape of its route plus a ``kind``:
``generation`` (``POST /v1/generations``), ``edit`` (``POST /v1/edits``) or ``agentic``
(``POST /v1/agentic/generations``). A line is checked with the same pydantic class as the
route, then with the checks the route makes before it reserves anything that need no
tenant (the core's ``check_generation`` and the like): the model exists and offers the
size, steps and scheduler, the edit tool's fields, the agentic budget and components,
every image (a saved recipe's thumbnails too) decodes within the input limits and is a
PNG, JPEG or WebP, a mask has its image's size. What needs a tenant (styles, pins,
assets and their rights) is checked when the line runs, by the route's own service, and
fails that line only.

Decisions where the issue is silent:

- An image field (``reference.image``, ``image_to_prompt.image``, an edit's ``image`` and
  ``mask``, an agentic ``references[i].image``) holds base64 (or a ``data:`` URL), or a
  *path*: a value with a ``.`` in it, which base64 never has (``"in/cat.png"``). Paths
  are read relative to the JSONL file's folder (absolute paths as they are) and inlined as
  base64, so a line's request is self-contained. Without a folder (an HTTP upload) a path
  is an invalid line.
- A line without ``seed`` gets one: the first 4 bytes of the SHA-256 of its line number
  and canonical JSON (images inlined). Reruns, and runs into a fresh folder, therefore
  make the same pixels; two equal lines at different numbers make different images.
- Blank lines are skipped but count: line numbers are the file's own, 1-based.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from pipelines.params import ParamError
from serving.core.batches.lines import (
    KINDS,
    BatchLine,
    InvalidLine,
    derived_seed,
    image_slots,
)
from serving.core.image_inputs import ImageLimits, UploadTooLarge, decode_b64_image
from serving.core.settings import Settings
from serving.http.errors import api_error_for, validation_error
from weights.catalog import Catalog, UnknownModelError


class _Invalid(Exception):
    """A line-level refusal raised inside parsing; becomes an ``InvalidLine``."""


def is_path(value: str) -> bool:
    """A path names a file with a suffix; base64 and ``data:`` URLs never hold a ``.``."""
    return "." in value and not value.startswith("data:")


def _inline_path(value: str, param: str, base_dir: Path | None, settings: Settings) -> str:
    """The file at ``value`` (relative to ``base_dir``) as base64, within the byte limit."""
    if base_dir is None:
        raise _Invalid(f"{param}: file paths are not accepted here; send the image as base64")
    path = base_dir / value
    if not path.is_file():
        raise _Invalid(f"{param}: no file {value} (relative to {base_dir})")
    try:
        ImageLimits.of(settings).check_bytes(path.stat().st_size, param)
    except UploadTooLarge as exc:
        raise _Invalid(str(exc)) from None
    return base64.b64encode(path.read_bytes()).decode()


def _inline_images(
    kind: str, request: dict, base_dir: Path | None, settings: Settings
) -> dict[str, Any]:
    """Replace paths by base64 in place; decode every image (limits, bad bytes); the
    decoded images by param."""
    decoded: dict[str, Any] = {}
    for part, key, param in image_slots(kind, request):
        value = part.get(key)
        if not isinstance(value, str):
            continue  # a wrong type is pydantic's to report
        if is_path(value):
            value = _inline_path(value, param, base_dir, settings)
            part[key] = value
        try:
            decoded[param] = decode_b64_image(value, param, settings)
        except (ParamError, UploadTooLarge) as exc:
            raise _Invalid(_param_message(exc)) from None
    return decoded


def _param_message(exc: BaseException) -> str:
    """``param: message`` of a refused request, as the HTTP error would name it."""
    error = api_error_for(exc)
    if error.param and not error.message.startswith(error.param):
        return f"{error.param}: {error.message}"
    return error.message


def _request_model(kind: str) -> type[BaseModel]:
    if kind == "generation":
        from serving.http.generations.protocol import GenerationRequest

        return GenerationRequest
    if kind == "edit":
        from serving.http.edits.protocol import EditRequest

        return EditRequest
    from serving.http.agentic.protocol import AgenticGenerationRequest

    return AgenticGenerationRequest


def _check_generation(request: Any, catalog: Catalog, settings: Settings, _: dict) -> str:
    """What ``Generations.create`` refuses before reserving, tenant aside."""
    from serving.core.generations.service import check_generation

    return check_generation(request.to_order(), catalog, settings)


def _check_edit(request: Any, catalog: Catalog, settings: Settings, images: dict) -> str:
    """What ``Edits.create`` refuses before reserving, tenant aside."""
    from serving.core.edits.service import check_edit

    image, mask = images.get("image"), images.get("mask")
    sizes = (image.size, mask.size) if image is not None and mask is not None else None
    return check_edit(request.to_order(), catalog, settings, sizes)


def _check_agentic(request: Any, catalog: Catalog, settings: Settings, _: dict) -> str:
    """What ``Agentic.create`` refuses before reserving, tenant aside: a saved recipe's
    thumbnails are decoded as the route decodes them."""
    from serving.core.agentic.checks import check_agentic, checked_recipe

    order = request.to_order()
    spec, _budget = check_agentic(order, catalog, settings)
    if order.recipe is not None:
        checked_recipe(order.recipe, order.components, settings)
    return spec.id


_CHECKS: dict[str, Callable[[Any, Catalog, Settings, dict], str]] = {
    "generation": _check_generation,
    "edit": _check_edit,
    "agentic": _check_agentic,
}


def parse_line(
    number: int, text: str, *, base_dir: Path | None, catalog: Catalog, settings: Settings
) -> BatchLine:
    """One non-blank line → a ``BatchLine``; raises ``ValueError`` with the reason (no
    ``line N:`` prefix)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:  # a line of 50,000 brackets was a 500
        raise ValueError("not valid JSON: nested too deeply") from None
    if not isinstance(raw, dict):
        raise ValueError("a line must be a JSON object")
    kind = raw.pop("kind", None)
    if kind is None:
        raise ValueError(f"kind: field required ({' | '.join(KINDS)})")
    if kind not in KINDS:
        raise ValueError(f"kind: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    try:
        images = _inline_images(kind, raw, base_dir, settings)
        model_class = _request_model(kind)
        request = model_class.model_validate_json(json.dumps(raw))
        model = _CHECKS[kind](request, catalog, settings, images)
    except _Invalid as exc:
        raise ValueError(str(exc)) from None
    except ValidationError as exc:
        raise ValueError(validation_error(exc.errors()).message) from None
    except (ParamError, UnknownModelError, UploadTooLarge) as exc:
        raise ValueError(_param_message(exc)) from None
    if raw.get("seed") is None:
        raw["seed"] = derived_seed(number, kind, raw)
    return BatchLine(number, kind, raw, model, int(raw.get("n", 1)))


def parse_batch(
    text: str, *, base_dir: Path | None, catalog: Catalog, settings: Settings
) -> tuple[list[BatchLine], list[InvalidLine]]:
    """Every line of a JSONL batch, valid ones and refused ones (see the module
    docstring); blank lines are skipped."""
    lines: list[BatchLine] = []
    invalid: list[InvalidLine] = []
    for number, text_line in enumerate(text.splitlines(), start=1):
        if not text_line.strip():
            continue
        try:
            lines.append(
                parse_line(number, text_line, base_dir=base_dir, catalog=catalog, settings=settings)
            )
        except ValueError as exc:
            invalid.append(InvalidLine(number, f"line {number}: {exc}"))
    return lines, invalid
