"""Fixtures of the style tests: real tiny LoRA files of both layouts, for both families."""

from __future__ import annotations

from pathlib import Path

import pytest
from lora_makers import kohya_lora, peft_lora

FAMILIES = ("sd15", "sdxl")
LAYOUTS = ("diffusers", "kohya")


@pytest.fixture(scope="session")
def lora_files(catalog, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """(family, layout) -> a rank-4 LoRA file for that family's tiny model, with UNet and
    text-encoder layers; made once per session."""
    out = tmp_path_factory.mktemp("loras")
    files = {}
    for family in FAMILIES:
        source = str(catalog.get(f"tiny-{family}").source)
        files[(family, "diffusers")] = peft_lora(source, family, out / f"peft-{family}.safetensors")
        files[(family, "kohya")] = kohya_lora(source, family, out / f"kohya-{family}.safetensors")
    return files
