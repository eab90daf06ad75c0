"""Peak memory and time of one SVG export by source size (1024², 2048², 4096², 7680²).

    .venv/bin/python benchmarks/svg_memory.py [--sizes 1024 2048 4096 7680] [--before-max 2048]

Every measurement runs in a fresh process: it reads the asset file (a PNG written as Kiln
writes assets, ``pipelines.provenance.encode_png``), runs one warm-up trace of a small
image, then resets the resident high-water mark (``/proc/self/clear_refs``) and traces.
Peak = VmHWM minus the resident size just before: what one request adds to the ingress
on top of the file bytes it already holds. The picture is the same at every size (flat
shapes over a soft gradient with light noise, in proportion to the canvas).

- after: ``serving.core.exports.service.render_svg``, what ``GET …/download?format=svg`` runs:
  the PNG decoded in strips straight to at most 2048 px, vtracer handed a PNG buffer.
- before (reference only, kept here, not in Kiln): the code it replaced: the PNG decoded
  whole, a Python tuple per pixel handed to ``vtracer.convert_pixels_to_svg`` at full
  size. Run up to ``--before-max`` px (default 2048: 4096² would take ~3 GiB, 7680²
  ~10 GiB).

``--smoke``: 256² and 512², before and after, in seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._peak import PeakMemory  # noqa: E402


def picture(side: int) -> np.ndarray:
    """Three flat shapes over a soft gradient, light noise: the same picture at any size."""
    axis = np.linspace(0.0, 1.0, side, dtype=np.float32)
    y, x = axis[:, None], axis[None, :]
    image = np.empty((side, side, 3), np.uint8)
    image[..., 0] = (170 + 60 * x).astype(np.uint8)
    image[..., 1] = (190 + 40 * y).astype(np.uint8)
    image[..., 2] = 225
    image[(y > 0.06) & (y < 0.38) & (x > 0.05) & (x < 0.4)] = (220, 30, 30)
    image[(y - 0.72) ** 2 + (x - 0.25) ** 2 < 0.04] = (30, 160, 40)
    image[(y > 0.12) & (y < 0.88) & (x > 0.55) & (x < 0.95)] = (30, 60, 200)
    rng = np.random.default_rng(0)
    for row in range(0, side, 512):  # in bands: the noise never needs a full-size array
        band = image[row : row + 512]
        noise = rng.integers(-3, 4, band.shape, dtype=np.int16)
        band[...] = np.clip(band.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return image


def before_svg(data: bytes, long_side: int | None) -> bytes:
    """Reference only: the SVG export as it was before issue 16 (a tuple per pixel)."""
    import vtracer

    from serving.core.exports.service import decode_asset

    pixels = decode_asset(data)
    height, width = pixels.shape[:2]
    if pixels.shape[2] == 3:
        pixels = np.dstack([pixels, np.full((height, width), 255, np.uint8)])
    rgba = [tuple(p) for p in np.ascontiguousarray(pixels).reshape(-1, 4).tolist()]
    svg = vtracer.convert_pixels_to_svg(
        rgba, size=(width, height), colormode="color", hierarchical="stacked",
        mode="spline", filter_speckle=4, color_precision=6,
    )  # fmt: skip
    return svg.encode()


def measure_one(path: Path, variant: str) -> dict[str, float]:
    """In this (fresh) process: one export of the PNG at ``path``; MiB added, seconds."""
    from pipelines.provenance import encode_png
    from serving.core.exports.service import render_svg

    export = render_svg if variant == "after" else before_svg
    export(encode_png(picture(64), {}), None)  # warm-up: imports, vtracer's first call
    data = path.read_bytes()
    with PeakMemory() as peak:
        started = time.perf_counter()
        svg = export(data, None)
        seconds = time.perf_counter() - started
    return {"peak_mib": peak.added_mib, "seconds": seconds, "svg_kib": len(svg) / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 7680])
    parser.add_argument("--before-max", type=int, default=2048,
                        help="largest source also run the old way (per-pixel tuples)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="256² and 512², in seconds")
    parser.add_argument("--one", nargs=2, metavar=("PNG", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(Path(args.one[0]), args.one[1])))
        return 0
    if args.smoke:
        args.sizes, args.before_max = [256, 512], 512
    from pipelines.provenance import encode_png
    from pipelines.vectorize import work_factor

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sizes:
            path = Path(tmp) / f"{side}.png"
            path.write_bytes(encode_png(picture(side), {"Software": "Kiln"}))
            variants = ("before", "after") if side <= args.before_max else ("after",)
            for variant in variants:
                done = subprocess.run(
                    [sys.executable, __file__, "--one", str(path), variant],
                    capture_output=True, text=True, check=True, cwd=ROOT,
                )  # fmt: skip
                result = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append((side, variant, path.stat().st_size / 2**20, result))
    print("| source | traced at | variant | peak memory added | time | SVG |")
    print("|---|---|---|---|---|---|")
    for side, variant, file_mib, r in rows:
        traced = side if variant == "before" else -(-side // work_factor(side, side))
        label = "before: tuple per pixel (reference)" if variant == "before" else "after"
        figures = f"{r['peak_mib']:.0f} MiB | {r['seconds']:.2f} s | {r['svg_kib']:.0f} KiB"
        print(f"| {side}² ({file_mib:.1f} MiB PNG) | {traced}² | {label} | {figures} |")
    after = {side: r for side, variant, _, r in rows if variant == "after"}
    for side, variant, _, r in rows:
        if variant == "before":
            memory = r["peak_mib"] / after[side]["peak_mib"]
            seconds = r["seconds"] / after[side]["seconds"]
            print(f"{side}²: before / after: peak memory {memory:.1f}x, time {seconds:.1f}x")
    largest, smallest = max(after), min(after)
    print(
        f"after: peak {after[largest]['peak_mib']:.0f} MiB for {largest}², "
        f"{after[smallest]['peak_mib']:.0f} MiB for {smallest}² "
        f"({largest**2 / smallest**2:.0f}x the pixels)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
