"""Limits on what a request may send: bodies, images, batches, parts, open streams.

Each field declares one environment variable (``env_field``: name, parser, help);
``Settings`` (serving/core/settings.py) inherits them, and README.md's configuration
table is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.env_fields import env_field, positive_int


@dataclass(frozen=True)
class RequestLimits:
    """Limits on what a request may send: bodies, images, batches, parts, open streams."""

    # fmt: off
    image_max_bytes: int = env_field(
        "KILN_IMAGE_MAX_BYTES", 20 * 1024 * 1024, parse=positive_int,
        help="largest input image (edits, references, pins, image-to-prompt, agentic), in bytes, "
        "checked before decoding (default 20 MiB)",
    )
    image_max_pixels: int = env_field(
        "KILN_IMAGE_MAX_PIXELS", 40_000_000, parse=positive_int,
        help="most pixels of an input image, checked before decompressing (default 40 megapixels)",
    )
    batch_max_bytes: int = env_field(
        "KILN_BATCH_MAX_BYTES", 64 * 1024 * 1024, parse=positive_int,
        help="largest JSONL upload of `POST /v1/batches`, in bytes, checked before it is read "
        "(default 64 MiB)",
    )
    batch_max_lines: int = env_field(
        "KILN_BATCH_MAX_LINES", 10_000, parse=positive_int,
        help="most request lines in one `POST /v1/batches` upload (default 10000)",
    )
    body_max_json: int = env_field(
        "KILN_BODY_MAX_JSON", 64 * 1024 * 1024, parse=positive_int,
        help="largest JSON request body (generations, edits, agentic, pins, image-to-prompt, "
        "admin, …), in bytes (default 64 MiB)",
    )
    body_max_images: int = env_field(
        "KILN_BODY_MAX_IMAGES", 64 * 1024 * 1024, parse=positive_int,
        help="largest multipart image upload (`POST /v1/images/edits`, `/v1/images/variations`), "
        "in bytes (default 64 MiB)",
    )
    body_max_style: int | None = env_field(
        "KILN_BODY_MAX_STYLE", None, parse=positive_int,
        help="largest `POST /v1/styles` upload, in bytes (default `KILN_STYLE_MAX_BYTES` + 1 MiB)",
    )
    body_max_training: int | None = env_field(
        "KILN_BODY_MAX_TRAINING", None, parse=positive_int,
        help="largest `POST /v1/styles/train` upload, in bytes (default 50 × "
        "`KILN_TRAINING_IMAGE_MAX_BYTES` + 1 MiB)",
    )
    multipart_max_parts: int = env_field(
        "KILN_MULTIPART_MAX_PARTS", 128, parse=positive_int,
        help="most parts (files and fields) in one multipart request (default 128)",
    )
    svg_max_concurrent: int = env_field(
        "KILN_SVG_MAX_CONCURRENT", 2, parse=positive_int,
        help="SVG traces one ingress process runs at once; more answer 429 (default 2)",
    )
    event_streams_per_tenant: int = env_field(
        "KILN_EVENT_STREAMS_PER_TENANT", 32, parse=positive_int,
        help="open `GET /v1/jobs/{id}/events` streams a tenant may hold per ingress process; "
        "more answer 429 (default 32)",
    )
    # fmt: on
