"""Tiled against untiled upscaling, 1024 px -> 7680 px (8K UHD) with the tiny model.

Each variant runs in a fresh process (peak memory is the process's resident high-water
mark, VmHWM, reset just before the upscale), on a 1024x576 gradient-with-noise image:
one 4x pass of the tiny ESRGAN Compact to 4096x2304, then Lanczos to 7680x4320. Prints
wall time and the memory the upscale added. The tiny model's activations are small (8
channels); a real ESRGAN (64 channels, 23 RRDB blocks) multiplies the untiled figure by
tens and runs out of GPU memory long before 8K, which is what tiling is for.

    .venv/bin/python benchmarks/upscale.py [--long-side 7680] [--tile 256]
    .venv/bin/python benchmarks/upscale.py --smoke   # 256x144 -> 512 px in 128 px tiles
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._peak import PeakMemory  # noqa: E402

logger = logging.getLogger("upscale_bench")


def run_one(model: str, long_side: int, tile: int | None, width: int = 1024) -> dict:
    """One upscale of a ``width`` x 9/16 ``width`` image in this process: seconds and MiB
    added at peak."""
    import numpy as np

    from pipelines.upscale import UpscaleParams, Upscaler, upscale

    upscaler = Upscaler.load(Path(model))
    rng = np.random.default_rng(0)
    height = width * 9 // 16
    ramp = np.add.outer(np.linspace(30, 220, height), np.linspace(0, 40, width))
    image = np.clip(np.stack([ramp] * 3, -1) + rng.normal(0, 4, (height, width, 3)), 0, 255)
    image = image.astype(np.uint8)
    upscale(image[:64, :64], UpscaleParams(256, tile=tile), upscaler)  # warm up
    with PeakMemory() as peak:
        start = time.perf_counter()
        out = upscale(image, UpscaleParams(long_side, tile=tile), upscaler)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_mb": peak.added_mib,
        "output_mb": out.nbytes / 2**20,
        "size": f"{out.shape[1]}x{out.shape[0]}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-side", type=int, default=7680)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--source", type=int, default=1024, help="the source image's width")
    parser.add_argument("--one", nargs=4, metavar=("MODEL", "LONG_SIDE", "TILE", "SOURCE"),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="256x144 -> 512 px, 128 px tiles")
    args = parser.parse_args(argv)
    if args.smoke:  # still one model pass (to 1024x576) and a Lanczos step down, as at 8K
        args.long_side, args.tile, args.source = 512, 128, 256
    if args.one:
        model, long_side, tile, source = args.one
        tile_px = None if tile == "none" else int(tile)
        print(json.dumps(run_one(model, int(long_side), tile_px, int(source))))
        return 0
    from weights.tiny_upscaler import build_tiny_esrgan

    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_tiny_esrgan(Path(tmp) / "tiny-esrgan.safetensors"))
        rows = {}
        for name, tile in (("tiled", str(args.tile)), ("untiled", "none")):
            done = subprocess.run(
                [sys.executable, __file__, "--one", model, str(args.long_side), tile,
                 str(args.source)],
                capture_output=True, text=True, check=True, cwd=ROOT,
            )  # fmt: skip
            rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    logger.info("| variant | result | time | peak memory added | of which output |")
    logger.info("|---|---|---|---|---|")
    for name, row in rows.items():
        label = f"tiled ({args.tile} px tiles)" if name == "tiled" else "untiled"
        logger.info(
            "| %s | %s | %.2f s | %.0f MiB | %.0f MiB |",
            label, row["size"], row["seconds"], row["peak_mb"], row["output_mb"],
        )  # fmt: skip
    # At small sizes the tiled run may add nothing beyond the warm-up: floor it at 1 MiB.
    ratio = rows["untiled"]["peak_mb"] / max(rows["tiled"]["peak_mb"], 1.0)
    logger.info("untiled / tiled peak memory: %.2fx; time %.2fx", ratio,
                rows["untiled"]["seconds"] / rows["tiled"]["seconds"])  # fmt: skip
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
