"""Reading, writing and comparing the committed golden files.

Images are compared as pixels, never as file bytes: a delivered PNG carries its asset id
in a text chunk, and zlib's output may differ between library builds for the same
pixels. What is compared, for every image:

- size and mode (``RGB``, ``RGBA``), exactly;
- the PNG text chunks (tEXt/iTXt/zTXt, as PIL reads them into ``image.text``), exactly,
  except ``VOLATILE_TEXT``: ``kiln:asset_id`` and ``kiln:style``, the random ids of the
  asset and of the style (a new one each run). They are dropped from the stored file;
  everything else of the file but its pixels and text (chunk order, compression level,
  ``IDAT`` split) is ignored;
- pixels: within the request's ``Tolerance`` (``golden_requests`` says which and why,
  with the measurements), and exactly in its exact region (an edit's pixels outside
  its mask) where it has one.

The stored PNG is re-encoded from the delivered pixels and kept text (zlib level 9), so
regenerating without a change writes the same bytes and git sees no difference.

An SVG is text from vtracer, a deterministic tracer, so it is compared as text; when its
source image is only within tolerance of its golden, a one-level colour change can move
a layer's outline, so then the drawing's size, viewBox and path count are compared
(``svg_summary``), the path count within ``SVG_PATH_SLACK``.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np
from golden_requests import Tolerance
from PIL import Image
from PIL.PngImagePlugin import PngInfo

# Random per run: the asset's id and the style's id (both also in the API answer).
VOLATILE_TEXT = ("kiln:asset_id", "kiln:style")
# An SVG traced from a within-tolerance source: path count may move by this fraction.
SVG_PATH_SLACK = 0.1

_SVG = "{http://www.w3.org/2000/svg}"


@dataclass(frozen=True)
class Picture:
    """A decoded PNG: pixels (HxWxC uint8), PIL mode, and its kept text chunks."""

    pixels: np.ndarray
    mode: str
    text: dict[str, str]


def read_png(data: bytes) -> Picture:
    """Decode ``data``; the text chunks less ``VOLATILE_TEXT``."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        text = {k: v for k, v in image.text.items() if k not in VOLATILE_TEXT}
        return Picture(np.asarray(image).copy(), image.mode, text)


def normalised_png(picture: Picture) -> bytes:
    """The bytes stored for ``picture``: its pixels and kept text, zlib level 9."""
    info = PngInfo()
    for key, value in picture.text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(picture.pixels, picture.mode).save(
        buffer, format="PNG", pnginfo=info, compress_level=9
    )
    return buffer.getvalue()


@dataclass(frozen=True)
class PixelDelta:
    """How far two images' pixels are apart, in uint8 levels."""

    max: int
    mean: float
    changed: float  # fraction of values that differ at all

    def __str__(self) -> str:
        return f"max |delta| {self.max}, mean {self.mean:.4f}, {self.changed:.2%} of values changed"


def pixel_delta(expected: np.ndarray, actual: np.ndarray) -> PixelDelta:
    difference = np.abs(expected.astype(np.int16) - actual.astype(np.int16))
    return PixelDelta(
        int(difference.max()), float(difference.mean()), float((difference > 0).mean())
    )


def compare_pictures(
    expected: Picture,
    actual: Picture,
    tolerance: Tolerance,
    exact_region: np.ndarray | None = None,
) -> list[str]:
    """What differs between the golden ``expected`` and ``actual`` (empty: they match)."""
    if (expected.mode, expected.pixels.shape) != (actual.mode, actual.pixels.shape):
        shape = f"{expected.mode} {expected.pixels.shape[1::-1]}"
        return [f"image is {actual.mode} {actual.pixels.shape[1::-1]}, golden {shape}"]
    problems = []
    if expected.text != actual.text:
        for key in sorted(set(expected.text) | set(actual.text)):
            old, new = expected.text.get(key), actual.text.get(key)
            if old != new:
                problems.append(f"PNG text {key!r}: {new!r}, golden {old!r}")
    delta = pixel_delta(expected.pixels, actual.pixels)
    if delta.max > tolerance.max or delta.mean > tolerance.mean:
        limit = f"max {tolerance.max}, mean {tolerance.mean}"
        problems.append(f"pixels beyond tolerance ({limit}): {delta}")
    if exact_region is not None:
        kept = pixel_delta(expected.pixels[exact_region], actual.pixels[exact_region])
        if kept.max > 0:
            problems.append(f"pixels outside the edit's mask are no longer exact: {kept}")
    return problems


def svg_summary(text: str) -> dict[str, Any]:
    """The drawing's declared size, viewBox and number of paths."""
    root = ET.fromstring(text)
    return {
        "width": root.get("width"),
        "height": root.get("height"),
        "viewBox": root.get("viewBox"),
        "paths": sum(1 for _ in root.iter(f"{_SVG}path")),
    }


def compare_svgs(expected: str, actual: str, exact: bool) -> list[str]:
    """What differs between two SVG texts: the text when ``exact``, else the summary."""
    if exact:
        if expected == actual:
            return []
        old, new = svg_summary(expected), svg_summary(actual)
        return [
            f"SVG text differs ({len(actual)} chars, golden {len(expected)}): {new}, golden {old}"
        ]
    old, new = svg_summary(expected), svg_summary(actual)
    slack = max(1, round(old["paths"] * SVG_PATH_SLACK))
    same_frame = all(old[key] == new[key] for key in ("width", "height", "viewBox"))
    if same_frame and abs(old["paths"] - new["paths"]) <= slack:
        return []
    return [f"SVG {new}, golden {old} (paths within {slack})"]


# --- the OpenAPI document ---------------------------------------------------------------


def dump_json(document: Any) -> str:
    """The stored form of a JSON golden: 2-space indent, keys in the document's order."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def json_differences(expected: Any, actual: Any, pointer: str = "") -> list[str]:
    """Every place two JSON documents differ, as ``pointer: what``. Object key order is
    not compared (JSON objects are unordered); array order is."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in list(expected) + [k for k in actual if k not in expected]:
            where = f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in actual:
                found.append(f"{where}: removed")
            elif key not in expected:
                found.append(f"{where}: added")
            else:
                found += json_differences(expected[key], actual[key], where)
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        found = []
        for index, (old, new) in enumerate(zip(expected, actual, strict=True)):
            found += json_differences(old, new, f"{pointer}/{index}")
        return found
    if expected == actual and type(expected) is type(actual):
        return []
    return [f"{pointer or '/'}: {_short(actual)} (golden {_short(expected)})"]


def openapi_report(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    """A reader's summary of how two OpenAPI documents differ (empty: they are equal):
    the changed paths and schemas by name, then each difference as a JSON pointer."""
    differences = json_differences(expected, actual)
    if not differences:
        return ""
    paths: dict[str, None] = {}
    schemas: dict[str, None] = {}
    for line in differences:
        parts = line.split(":", 1)[0].split("/")
        if parts[1:2] == ["paths"] and len(parts) > 2:
            paths[_unescape(parts[2]) + (f" ({parts[3]})" if len(parts) > 3 else "")] = None
        elif parts[1:3] == ["components", "schemas"] and len(parts) > 3:
            schemas[_unescape(parts[3])] = None
    lines = []
    if paths:
        lines.append("paths changed: " + ", ".join(paths))
    if schemas:
        lines.append("schemas changed: " + ", ".join(schemas))
    shown = differences[:60]
    lines += shown
    if len(differences) > len(shown):
        lines.append(f"... and {len(differences) - len(shown)} more differences")
    return "\n".join(lines)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
