"""A batch's lines as values: what a checked line is, where its images sit, and how it is
recorded (the manifest and each output PNG keep the request with its images replaced by
their digest). Checking a file's lines against the routes' request classes is
``serving.http.batch.parsing``'s work; running them is ``serving.ray.batch``'s.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KINDS = ("generation", "edit", "agentic")
# How an inlined image appears in a line's recorded request (manifest, PNG metadata).
DIGEST_PREFIX = "sha256:"


@dataclass(frozen=True)
class BatchLine:
    """One valid line: what runs, exactly as the HTTP route would receive it."""

    number: int  # 1-based line number in the file
    kind: str  # "generation" | "edit" | "agentic"
    request: dict  # the request JSON, images inlined as base64, ``kind`` removed, seed filled
    model: str = ""  # the model whose worker pool runs it ("" when it depends on a tenant)
    images: int = 1  # images the line asks for (``n``): the progress bar's unit

    @property
    def recorded(self) -> dict:
        """The request with each inlined image replaced by ``sha256:<hex>`` of its base64
        text: what the manifest and the PNG metadata keep (a line's images can be
        megabytes; the digest still tells any change apart)."""
        return recorded_request(self.kind, self.request)


@dataclass(frozen=True)
class InvalidLine:
    """A line refused before anything runs."""

    number: int
    message: str  # e.g. "line 7: prompt: field required"


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: one text per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def derived_seed(number: int, kind: str, request: dict) -> int:
    """The seed of a line that gave none: stable across runs, distinct per line number."""
    text = f"{number}\n{canonical_json({'kind': kind, 'request': request})}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


# An image slot of a request: (the dict holding it, its key, its param name for errors).
ImageSlot = tuple[dict, str, str]


def image_slots(kind: str, request: dict) -> Iterator[ImageSlot]:
    """Where a request of ``kind`` may carry images, as (dict, key, param)."""

    def sub(name: str) -> dict | None:
        value = request.get(name)
        return value if isinstance(value, dict) else None

    if kind == "generation":
        for name in ("reference", "image_to_prompt"):
            if (part := sub(name)) is not None:
                yield part, "image", f"{name}.image"
    elif kind == "edit":
        yield request, "image", "image"
        yield request, "mask", "mask"
        if (part := sub("image_to_prompt")) is not None:
            yield part, "image", "image_to_prompt.image"
    elif kind == "agentic":
        references = request.get("references")
        if isinstance(references, list):
            for index, reference in enumerate(references):
                if isinstance(reference, dict):
                    yield reference, "image", f"references.{index}.image"


def recorded_request(kind: str, request: dict) -> dict:
    """``request`` with each image replaced by ``sha256:<hex>`` (see ``BatchLine.recorded``)."""
    copy = json.loads(json.dumps(request))
    for part, key, _ in image_slots(kind, copy):
        value = part.get(key)
        if isinstance(value, str):
            part[key] = DIGEST_PREFIX + hashlib.sha256(value.encode()).hexdigest()
    return copy
