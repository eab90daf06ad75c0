"""What agentic extraction costs: 10 references of 1024x1024 on CPU, all four components.

    .venv/bin/python benchmarks/agentic_extract.py [--references 10] [--side 1024] [--repeats 3]
    .venv/bin/python benchmarks/agentic_extract.py --smoke   # 3 references of 128 px, once

The references are scikit-image's bundled colour photographs (inside the package, nothing
downloaded) resized to ``--side`` square. Prints, measured in one run, the median over
``--repeats`` of: the whole extraction of all references (``extract_recipe``: per-reference
measurements, then the blend with outlier checks), the time per reference, and per
component (palette, grading, lighting, composition) summed over the references.
Goal (issue 7): all 10 in at most 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from agentic.colour import WORK_SIDE, downsample  # noqa: E402
from agentic.composition import extract_composition  # noqa: E402
from agentic.grading import extract_grading  # noqa: E402
from agentic.lighting import extract_lighting  # noqa: E402
from agentic.palette import extract_palette  # noqa: E402
from agentic.recipe import extract_recipe  # noqa: E402

PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
    "retina", "camera", "colorwheel", "logo",
)  # fmt: skip
COMPONENTS: dict[str, Callable[[np.ndarray], object]] = {
    "palette": extract_palette,
    "grading": extract_grading,
    "lighting": extract_lighting,
    "composition": extract_composition,
}


def references(count: int, side: int) -> list[np.ndarray]:
    """``count`` bundled photographs as uint8 RGB at ``side`` x ``side``."""
    import cv2
    from skimage import data

    images = []
    for name in PHOTOS:
        try:
            image = getattr(data, name)()
        except Exception:  # a fetched (not bundled) image: skip, never download
            continue
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = image[..., :3].astype(np.uint8)
        images.append(cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC))
    found = list(images)
    while len(images) < count:  # fewer bundled photographs than asked: mirrored copies
        images.append(np.ascontiguousarray(images[len(images) % len(found)][:, ::-1]))
    return images[:count]


def median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: imports, OpenCV's first calls
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--references", type=int, default=10)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="3 references of 128 px, once")
    args = parser.parse_args(argv)
    if args.smoke:
        args.references, args.side, args.repeats = 3, 128, 1
    images = references(args.references, args.side)
    total = median_s(lambda: extract_recipe(images), args.repeats)
    print(f"references: {len(images)} x {args.side}x{args.side} RGB")
    print(f"extract_recipe, all references: {total:.3f} s  (goal <= 2 s)")
    print(f"per reference: {total / len(images) * 1000:.1f} ms")
    shared = median_s(lambda: [downsample(image) for image in images], args.repeats)
    print(f"  shared downsample to {WORK_SIDE} px: {shared / len(images) * 1000:.1f} ms")
    small = [downsample(image) for image in images]
    for name, extract in COMPONENTS.items():
        seconds = median_s(
            lambda extract=extract: [extract(image) for image in small], args.repeats
        )
        print(f"  {name}: {seconds / len(images) * 1000:.1f} ms per reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
