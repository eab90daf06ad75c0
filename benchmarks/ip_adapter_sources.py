"""What IP-Adapter conditioning costs per call: no adapter, the adapter loaded but idle
(a call without pins), and 1, 2 or 4 sources (pins/references, one tied slot each); plus
embedding a pin's pictures once, and the parameters the slots add.

    .venv/bin/python benchmarks/ip_adapter_sources.py [--model tiny-sd15] [--device cpu]
        [--steps 4] [--size 128] [--repeats 5] [--threads 1] [--smoke]

Each figure is the median of ``--repeats`` timed calls after a warm-up, all in one run,
with its ratio against the call on a model that never loaded an adapter. ``--model`` is
any catalog model whose family has an IP-Adapter component; the tiny ones are built when
missing.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.engine import Engine  # noqa: E402
from pipelines.ip_adapter import _ensure_slots, embed_images  # noqa: E402
from pipelines.params import (  # noqa: E402
    AdapterConditioning,
    AdapterImage,
    GenerationParams,
)
from weights.catalog import load_catalog  # noqa: E402
from weights.tiny import ensure_tiny_components, ensure_tiny_models  # noqa: E402


def median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-sd15")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--smoke", action="store_true", help="64 px, 1 step, once")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.steps, args.repeats = 64, 1, 1
    import torch

    # One thread: on a shared CPU, OpenMP teams wait on each other and swamp the figures.
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(os.environ.get("KILN_HOME", "~/.kiln")).expanduser()
    catalog = load_catalog(home)
    spec = catalog.get(args.model)
    component = catalog.first_component("ip_adapter", spec.family)
    if component is None:
        raise SystemExit(f"no IP-Adapter component for {spec.id} ({spec.family})")
    ensure_tiny_models([spec])
    ensure_tiny_components([component])
    engine = Engine.load(spec, device=args.device, components=(component,))
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(4)]

    def call(adapter: AdapterConditioning | None) -> Callable[[], object]:
        params = GenerationParams.build(
            spec, prompt="a lighthouse", seed=1, steps=args.steps, width=args.size,
            height=args.size, adapter=adapter,
        )  # fmt: skip
        return lambda: engine.generate([params])

    embed_one = median_s(lambda: embed_images(engine, component.id, pictures[:1]), args.repeats)
    embed_four = median_s(lambda: embed_images(engine, component.id, pictures), args.repeats)
    sources = [
        AdapterImage(f"pin{i}", embed_images(engine, component.id, pictures[i : i + 1]), 0.7)
        for i in range(4)
    ]
    # Timed interleaved, one call of each case per round, so a machine whose load drifts
    # during the run (a shared CPU) shifts every case alike.
    baseline = median_s(call(None), args.repeats)  # before any adapter is loaded
    cases = {"adapter loaded, no pins": call(None)} | {
        f"{count} source(s)": call(AdapterConditioning(component.id, tuple(sources[:count])))
        for count in (1, 2, 4)
    }
    cases["1 source(s)"]()  # loads the adapter: one slot
    params_before = sum(p.numel() for p in engine.pipe.unet.parameters())
    for run in cases.values():
        run()  # warm-up; grows the slots to 4
    slots = _ensure_slots(engine, 4)
    params_after = sum(p.numel() for p in engine.pipe.unet.parameters())
    # The no-adapter baseline cannot be interleaved (loading is one-way): it is compared
    # with the idle case, and the sources with the idle case too.
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(args.repeats):
        for label, run in cases.items():
            started = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - started)
    rows = [(label, statistics.median(values)) for label, values in times.items()]
    idle = rows[0][1]

    print(f"{spec.id} on {engine.device}, {args.size}px, {args.steps} steps, {component.id}")
    print(f"  no adapter loaded (before)    {baseline * 1000:8.1f} ms")
    for label, seconds in rows:
        print(f"  {label:<29} {seconds * 1000:8.1f} ms   {seconds / idle:.2f}x of idle")
    print(f"  embed 1 picture (once a pin)  {embed_one * 1000:8.1f} ms")
    print(f"  embed 4 pictures              {embed_four * 1000:8.1f} ms")
    print(f"  UNet parameters with {slots} slots: {params_after} (1 slot: {params_before})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
