"""Image-to-prompt on the tiny open_clip: what the text-embedding cache saves, and the cost
of one image once the embeddings are in memory. Prints figures measured in one run.

    .venv/bin/python benchmarks/image_to_prompt.py [--repeats 20] [--smoke]

A replica computes the vocabulary's embeddings once (or reads them from the safetensors
cache a previous replica wrote); every request then costs one image forward pass and a
matrix product per list. With a real CLIP the compute side grows with the text tower
(hundreds of terms x 3 templates through ViT-L's text transformer) while the cached read
stays a file read, so the ratio printed here is a lower bound.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="2 repeats")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats = 2
    os.environ["HF_HUB_OFFLINE"] = "1"
    from PIL import Image

    from pipelines.image_to_prompt.pipeline import ImageToPrompt, ImageToPromptParams
    from weights.catalog import load_catalog
    from weights.tiny import build_tiny_component

    home = Path(tempfile.mkdtemp(prefix="kiln-i2p-bench-"))
    component = load_catalog(home).component("tiny-clip")
    build_tiny_component(component.tiny, component.source)
    cache = home / "cache"
    first = ImageToPrompt.load(component, cache_dir=cache, device="cpu")
    terms = sum(len(v.terms) * len(v.templates) for v in first.vocabulary.lists)

    t0 = time.perf_counter()
    first.embeddings()
    computed = time.perf_counter() - t0
    reader = ImageToPrompt(first.clip, cache_dir=cache)
    t0 = time.perf_counter()
    reader.embeddings()
    from_disk = time.perf_counter() - t0
    assert (first.embedding_source, reader.embedding_source) == ("computed", "disk")

    image = Image.new("RGB", (512, 384), (180, 120, 60))
    for method in ("precise", "creative"):
        first(image, ImageToPromptParams(method=method))  # warm
    per_call = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        first(image, ImageToPromptParams(extract="everything", method="precise"))
        per_call.append(time.perf_counter() - t0)
    print(f"vocabulary: {len(first.vocabulary.lists)} lists, {terms} template texts")
    print(f"embeddings computed: {computed * 1000:.1f} ms")
    print(f"embeddings read from the safetensors cache: {from_disk * 1000:.1f} ms")
    print(f"computed / cached: {computed / from_disk:.1f}x")
    print(
        f"one image, everything, precise (embeddings in memory): median "
        f"{statistics.median(per_call) * 1000:.1f} ms over {args.repeats}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
