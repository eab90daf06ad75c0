"""LoRA styles: imports, what a replica keeps loaded, and style training.

Each field declares one environment variable (``env_field``: name, parser, help);
``Settings`` (serving/core/settings.py) inherits them, and README.md's configuration
table is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.env_fields import env_field, positive_float, positive_int


@dataclass(frozen=True)
class StyleVariables:
    """LoRA styles: imports, what a replica keeps loaded, and style training."""

    # fmt: off
    styles_per_replica: int = env_field(
        "KILN_STYLES_PER_REPLICA", 8, parse=positive_int,
        help="LoRA styles a model replica keeps loaded, least recently used out (default 8)",
    )
    style_max_bytes: int = env_field(
        "KILN_STYLE_MAX_BYTES", 256 * 1024 * 1024, parse=positive_int,
        help="largest LoRA file a style import accepts, in bytes (default 256 MiB)",
    )
    style_max_rank: int = env_field(
        "KILN_STYLE_MAX_RANK", 64, parse=positive_int,
        help="highest LoRA rank a style may have; also the GPU fast path's LoRA hotswap target "
        "rank, so every style swaps into a compiled model (default 64)",
    )
    style_imports_max: int = env_field(
        "KILN_STYLE_IMPORTS_MAX", 50, parse=positive_int,
        help="most private styles a tenant may import (default 50)",
    )
    style_imports_max_bytes: int = env_field(
        "KILN_STYLE_IMPORTS_MAX_BYTES", 2 * 1024 * 1024 * 1024, parse=positive_int,
        help="most bytes of private style files a tenant may keep (default 2 GiB)",
    )
    training_steps: int = env_field(
        "KILN_TRAINING_STEPS", 500, parse=positive_int,
        help="optimizer steps of a style training that does not ask (default 500)",
    )
    training_max_steps: int = env_field(
        "KILN_TRAINING_MAX_STEPS", 5000, parse=positive_int,
        help="most steps a style training may ask for (default 5000)",
    )
    training_rank: int = env_field(
        "KILN_TRAINING_RANK", 8, parse=positive_int,
        help="LoRA rank trained (default 8; at most `KILN_STYLE_MAX_RANK`)",
    )
    training_learning_rate: float = env_field(
        "KILN_TRAINING_LEARNING_RATE", 1e-4, parse=positive_float,
        help="AdamW learning rate of style training (default 1e-4, diffusers' recipe)",
    )
    training_image_max_bytes: int = env_field(
        "KILN_TRAINING_IMAGE_MAX_BYTES", 20 * 1024 * 1024, parse=positive_int,
        help="largest training image upload, in bytes, checked before decoding (default 20 MiB)",
    )
    training_image_max_pixels: int = env_field(
        "KILN_TRAINING_IMAGE_MAX_PIXELS", 40_000_000, parse=positive_int,
        help="most pixels (width x height) of a training image, checked before decompressing "
        "(default 40 megapixels)",
    )
    # fmt: on
