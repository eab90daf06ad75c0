"""Helpers of the ``kiln batch`` tests: lines on the tiny models, JSONL and image files,
manifest readers."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def gen(prompt: str = "a kiln", model: str = "tiny-sd15", **fields: Any) -> dict[str, Any]:
    """A cheap generation line (128 px, 2 steps; 1 credit an image on the tiny models)."""
    return {"kind": "generation", "model": model, "prompt": prompt, "steps": 2,
            "resolution": "128px", **fields}  # fmt: skip


def png_bytes(size: tuple[int, int] = (64, 64), colour: Any = (200, 90, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def png_b64(size: tuple[int, int] = (64, 64), colour: Any = (200, 90, 30), mode="RGB") -> str:
    return base64.b64encode(png_bytes(size, colour, mode)).decode()


def write_images(folder: Path) -> None:
    """``folder/in/cat.png`` (64x64) and ``folder/in/mask.png`` (white right half)."""
    (folder / "in").mkdir(parents=True, exist_ok=True)
    (folder / "in" / "cat.png").write_bytes(png_bytes(colour=(180, 120, 40)))
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(folder / "in" / "mask.png")


def edit_line(**fields: Any) -> dict[str, Any]:
    """A replace edit of ``in/cat.png`` (a path relative to the JSONL file)."""
    return {"kind": "edit", "tool": "replace", "model": "tiny-sd15", "image": "in/cat.png",
            "mask": "in/mask.png", "prompt": "a blue pot", "steps": 2, **fields}  # fmt: skip


def agentic_line(**fields: Any) -> dict[str, Any]:
    """The cheapest agentic generation: one reference, one candidate, no refinement."""
    return {"kind": "agentic", "model": "tiny-sd15", "prompt": "a vase", "steps": 2,
            "resolution": "128px", "references": [{"image": "in/cat.png"}], "candidates": 1,
            "rounds": 0, **fields}  # fmt: skip


def write_jsonl(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def read_manifest(out: Path) -> list[dict[str, Any]]:
    """Every entry of ``out/manifest.jsonl``, in file order."""
    return [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def leftovers(out: Path) -> list[str]:
    """Temp files of interrupted writes in ``out``."""
    return sorted(p.name for p in out.iterdir() if ".kiln-tmp-" in p.name)
