"""What ``pipelines.call_overhead`` saves on every pipeline call, measured in one run.

For each tiny model: the same ``Engine.generate`` call (n=1, 128x128, 4 steps, one torch
thread), with the pipeline as diffusers makes it (``untrim_call_overhead``) and trimmed
(its execution device pinned, attention's signatures cached), alternating, median of
``--repeats`` after a warm-up; the pipeline call's own time (``timings.total``), the
ratio, and whether the images are the same bit for bit. Also the time of one
``_execution_device`` question each way.

    .venv/bin/python benchmarks/call_overhead.py [--models tiny-sdxl tiny-flux1 ...]
    .venv/bin/python benchmarks/call_overhead.py --smoke   # tiny-sdxl, 3 repeats: it runs

The tiny models have the module tree of their families at a fraction of the width, so the
time saved a call is about what a real model saves (more: a real SDXL has more modules to
walk and attention layers to check), while the tiny call is far shorter than a real one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["HF_HUB_OFFLINE"] = "1"


def log(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["tiny-sdxl", "tiny-sd15", "tiny-flux1", "tiny-flux2-klein"],
        help="text-to-image models of the catalog",
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--home", type=Path, help="KILN_HOME (default: a temp dir)")
    parser.add_argument("--smoke", action="store_true", help="tiny-sdxl, 3 repeats")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.repeats = ["tiny-sdxl"], 3

    import numpy as np
    import torch

    from pipelines.call_overhead import trim_call_overhead, untrim_call_overhead
    from pipelines.engine import Engine
    from pipelines.params import GenerationParams
    from pipelines.task import Task
    from serving.core.settings import Settings
    from weights.catalog import load_catalog
    from weights.tiny import ensure_tiny_models

    torch.set_num_threads(1)
    home = args.home or Path(os.environ.get("KILN_HOME") or tempfile.mkdtemp(prefix="kiln-"))
    settings = Settings.from_env(home=str(home))
    catalog = load_catalog(settings.home, settings.catalog_path)
    ensure_tiny_models(catalog)
    log("| model | as diffusers makes it | trimmed | trimmed / plain | same pixels | "
        "`_execution_device`, plain → trimmed |")  # fmt: skip
    log("|---|---|---|---|---|---|")
    for model in args.models:
        spec = catalog.get(model)
        engine = Engine.load(spec, device="cpu")
        pipe = engine.pipeline(Task.TEXT_TO_IMAGE)
        params = GenerationParams.build(
            spec, prompt="a lighthouse at dusk", n=1, size="128x128", seed=1, steps=4
        )

        def call() -> tuple[float, np.ndarray]:
            output = engine.generate([params])[0]  # noqa: B023 (this model's, in its loop)
            return output.timings["total"], output.images[0]

        def ask(times: int = 20) -> float:
            started = time.perf_counter()
            for _ in range(times):
                pipe._execution_device  # noqa: B018, B023 (the question timed)
            return (time.perf_counter() - started) / times

        for _ in range(2):  # warm-up, both ways
            untrim_call_overhead(pipe)
            call()
            trim_call_overhead(pipe)
            call()
        plain_s, trimmed_s, same = [], [], True
        for _ in range(args.repeats):
            untrim_call_overhead(pipe)
            plain_total, plain_image = call()
            trim_call_overhead(pipe)
            trimmed_total, trimmed_image = call()
            plain_s.append(plain_total)
            trimmed_s.append(trimmed_total)
            same = same and bool(np.array_equal(plain_image, trimmed_image))
        untrim_call_overhead(pipe)
        asked_plain = ask()
        trim_call_overhead(pipe)
        asked_trimmed = ask()
        plain, trimmed = statistics.median(plain_s), statistics.median(trimmed_s)
        log(f"| {model} | {plain * 1000:.1f} ms | {trimmed * 1000:.1f} ms | "
            f"{trimmed / plain:.3f} | {same} | {asked_plain * 1000:.2f} → "
            f"{asked_trimmed * 1000:.4f} ms |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
