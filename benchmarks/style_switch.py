"""What a style change costs: switching between two loaded LoRA styles, bringing in a new
one, and (what Kiln never does) reloading the base pipeline from disk.

    .venv/bin/python benchmarks/style_switch.py [--model tiny-sd15] [--device cpu] [--repeats 5]
    .venv/bin/python benchmarks/style_switch.py --smoke   # rank 4, once

Each figure is the median of ``--repeats`` timed runs after a warm-up, measured in one
run, with the ratio against the reload. The styles are random rank-``--rank`` LoRAs on the
model's UNet attention (``styles.random_lora``): their size, not their content, sets the
cost. ``--model`` is any catalog model (``KILN_HOME/models.toml`` adds real ones); the
tiny models are built when missing. Goal (issue 4): a switch at least 50x faster than a
reload.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.families import load_pipeline  # noqa: E402
from pipelines.params import StyleRef  # noqa: E402
from pipelines.style_adapters import StyleAdapters  # noqa: E402
from styles.random_lora import random_unet_lora  # noqa: E402
from weights.catalog import load_catalog  # noqa: E402
from weights.devices import select_device, select_dtype  # noqa: E402
from weights.tiny import ensure_tiny_models  # noqa: E402

logger = logging.getLogger("style_switch")


def median_s(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-sd15")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="rank 4, once")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rank, args.repeats = 4, 1
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(os.environ.get("KILN_HOME", "~/.kiln")).expanduser()
    catalog = load_catalog(home)
    spec = catalog.get(args.model)
    ensure_tiny_models([spec])
    device = select_device(args.device)
    dtype = select_dtype(device)

    def sync() -> None:
        if str(device).startswith("cuda"):
            import torch

            torch.cuda.synchronize(device)

    with tempfile.TemporaryDirectory() as tmp:
        files = [
            random_unet_lora(spec.source / "unet", Path(tmp) / f"s{i}.safetensors", i, args.rank)
            for i in range(3)
        ]
        reload_s = median_s(lambda: load_pipeline(spec, device, dtype), args.repeats, sync)
        pipe = load_pipeline(spec, device, dtype)
        adapters = StyleAdapters(pipe, capacity=2)
        a, b = (StyleRef(f"sty_{i}", str(files[i])) for i in range(2))
        adapters.activate(a)
        adapters.activate(b)
        flip = iter(range(10**6))

        def switch() -> None:
            adapters.activate(a if next(flip) % 2 else b)

        switch_s = median_s(switch, args.repeats, sync)
        fresh = iter(range(10**6))

        def bring_in() -> None:
            # A style never loaded before (capacity 2: the oldest one goes).
            adapters.activate(StyleRef(f"new_{next(fresh)}", str(files[2])))

        new_s = median_s(bring_in, args.repeats, sync)

    logger.info("model %s on %s (%s), LoRA rank %d", spec.id, device, dtype, args.rank)
    logger.info("| change | median | reload / this |")
    logger.info("|---|---|---|")
    logger.info("| reload the base pipeline from disk | %.1f ms | 1.0x |", reload_s * 1000)
    logger.info(
        "| bring in a new style (load LoRA) | %.1f ms | %.0fx |", new_s * 1000, reload_s / new_s
    )
    logger.info(
        "| switch between loaded styles | %.2f ms | %.0fx |", switch_s * 1000, reload_s / switch_s
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
