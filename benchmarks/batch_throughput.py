"""Render-farm scaling: images/s of ``kiln batch`` with 1 and 2 workers, and the ratio.

The same JSONL (tiny SD 1.5 generations) runs through ``run_batch`` on one local Ray,
first with one actor, then with two, each into a fresh folder (nothing skipped). Each
actor gets ``--threads`` torch threads (default 1: the 2-core default of
``KILN_TORCH_THREADS``, cores less one), so two workers can use two cores where one
worker uses one. Two rates per run:

- end to end: images / wall time of ``run_batch``, pool start (torch import and model
  load in every actor) included;
- steady: images after the first finished line / time from the first to the last
  finished line: the rate once the pool is up, what a long overnight batch sees.

    .venv/bin/python benchmarks/batch_throughput.py [--lines 24] [--steps 4] [--quick|--smoke]

Prints a markdown table and the 2-worker/1-worker ratios; figures are this machine's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["HF_HUB_OFFLINE"] = "1"

from serving.core.settings import Settings  # noqa: E402
from serving.http.batch.parsing import parse_batch  # noqa: E402
from serving.ray.batch.runner import BatchOptions, run_batch  # noqa: E402

logger = logging.getLogger("batch_throughput")


def jsonl(lines: int, steps: int) -> str:
    return "\n".join(
        json.dumps(
            {
                "kind": "generation",
                "model": "tiny-sd15",
                "prompt": f"a kiln, shot {i}",
                "steps": steps,
                "resolution": "128px",
            }
        )  # fmt: skip
        for i in range(lines)
    )


def measure(settings: Settings, catalog, lines, out: Path, workers: int) -> dict[str, float]:
    """One run: end-to-end and steady images/s."""
    finished: list[tuple[float, int]] = []
    started = time.perf_counter()
    summary = run_batch(
        settings,
        catalog,
        lines,
        BatchOptions(out, workers=workers),
        on_progress=lambda f: finished.append((time.perf_counter(), f["images_done"])),
    )
    wall = time.perf_counter() - started
    if summary.failed or summary.images != sum(line.images for line in lines):
        raise RuntimeError(f"the run failed: {summary}")
    (t0, first), (t1, last) = finished[0], finished[-1]
    steady = (last - first) / (t1 - t0) if t1 > t0 else float("nan")
    return {"images": summary.images, "wall": wall, "end_to_end": summary.images / wall,
            "steady": steady}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=24, help="generations in the JSONL")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps a line")
    parser.add_argument("--threads", type=int, default=1, help="torch threads an actor")
    parser.add_argument("--quick", action="store_true", help="6 lines of 2 steps")
    parser.add_argument("--smoke", action="store_true", help="4 lines of 1 step: it runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.lines, args.steps = 6, 2
    if args.smoke:
        args.lines, args.steps = 4, 1
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("ray", "ray.data", "serving", "weights", "pipelines"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import ray

    from weights.catalog import load_catalog
    from weights.tiny import ensure_tiny_models

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = Settings(home=home, torch_threads=args.threads)
        catalog = load_catalog(home)
        ensure_tiny_models([catalog.get("tiny-sd15")])
        lines, invalid = parse_batch(
            jsonl(args.lines, args.steps), base_dir=None, catalog=catalog, settings=settings
        )
        assert not invalid, invalid
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
        try:
            results = {
                workers: measure(settings, catalog, lines, Path(tmp) / f"out{workers}", workers)
                for workers in (1, 2)
            }
        finally:
            ray.shutdown()
    logger.info(
        "%d lines (tiny-sd15, 128 px, %d steps, n=1), %d torch thread(s) an actor, %d CPUs",
        args.lines, args.steps, args.threads, os.cpu_count() or 0,
    )  # fmt: skip
    logger.info("| workers | images | wall | end to end | steady |")
    logger.info("|---|---|---|---|---|")
    for workers, r in results.items():
        logger.info(
            "| %d | %d | %.1f s | %.3f img/s | %.3f img/s |",
            workers, r["images"], r["wall"], r["end_to_end"], r["steady"],
        )  # fmt: skip
    one, two = results[1], results[2]
    logger.info(
        "scaling 2 vs 1 worker: end to end %.2fx, steady %.2fx",
        two["end_to_end"] / one["end_to_end"],
        two["steady"] / one["steady"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
