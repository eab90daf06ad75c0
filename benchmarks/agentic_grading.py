"""Does agentic colour grading land on a reference's colour statistics, on photographs
nobody tuned on? (issue 17)

    .venv/bin/python benchmarks/agentic_grading.py [--resolution 128px,256px] [--seed 8]
        [--photos astronaut,coffee,...] [--smoke]

Resolutions: the model's default and its smallest of at least 256 px (where the invisible
mark applies), unless ``--resolution`` names others (comma-separated).

For each reference (one at a time) the real agent runs on tiny-sd15 with the tiny ControlNet,
as ``POST /v1/agentic/generations`` does with ``components: {"grading": {"sources": [0],
"strength": 1}, "palette": {"sources": [0], "strength": 1}}`` (lighting and composition at
their defaults, 2 candidates, 1 refinement round), prompt "a street at noon", seed 8.
Image-to-prompt text and the IP-Adapter embedding, which the server adds, are left out:
they change what is generated, not how the transfers move it. From the kept candidate:

- plain: its raw generated image, before any transfer;
- grading only, palette only: its raw image finished with the other transfer off
  (lighting at the agent's strength in every finished column);
- both: the agent's finished image;
- delivered: that image through the API's finishing (``pipelines.finishing.finish_image``
  with the invisible mark's payload ``serving.core.assets`` derives, PNG), decoded back;
- delivered 2x: the same for that image doubled by nearest neighbour (the same colour
  statistics at twice the size: the mark at 256 px for a 128 px image, at 512 px for a
  256 px one; tiny-sd15 makes nothing larger than 256 px);
- strengths 0.25, 0.5, 0.75: grading and palette both at that strength on the same raw image.

Printed per reference: the plain image's Lab-moment distance to the reference (mean and
standard deviation of L*, a*, b*: ``agentic.measures``), then for every other column the
cut in that distance against plain (%) and the ΔE2000 of the mean colour; whether the cut
rises with strength; the share of skin-like and neutral pixels with a channel at 0 or 255,
plain -> delivered; and the share with a channel within 2 of 0 or 255 (piled near the
ends without reaching them), in the reference's own such pixels, then plain -> delivered.
Tuning set: astronaut and coffee; every other bundled colour photograph of scikit-image
and four synthetic extremes are reported.
Targets: delivered cut >= 90% on every reported photograph, median >= 95% (both delivered
columns); monotone in strength; clipping in skin-like/neutral regions at most 2 points
above plain (both delivered columns).
"""

from __future__ import annotations

import argparse
import functools
import io
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from agentic.measures import (  # noqa: E402
    clipped_share,
    mean_delta_e,
    moment_cut,
    moment_distance,
    near_extreme_share,
    skin_or_neutral,
)

TUNING = ("astronaut", "coffee")
# Every colour image scikit-image 0.26 ships inside its package (listing skimage.data:
# each function that returns HxWx3 or HxWx4 without fetching). ``cat`` is ``chelsea``
# (the same pixels); skin, lily and the other fetched images would need a download.
REPORTED = (
    "chelsea", "rocket", "motorcycle_left", "motorcycle_right", "hubble_deep_field",
    "immunohistochemistry", "retina", "colorwheel", "logo",
)  # fmt: skip
SYNTHETIC = ("near_monochrome", "high_key", "low_key", "poster")
SMOKE = ("astronaut", "poster")
STRENGTHS = (0.25, 0.5, 0.75, 1.0)
PROMPT = "a street at noon"
CUT_TARGET = 0.90
MEDIAN_TARGET = 0.95
CLIP_POINTS = 2.0


def _lab_image(lightness: np.ndarray, a: float, b: float) -> np.ndarray:
    from agentic.colour import lab_to_uint8

    lab = np.stack([lightness, np.full_like(lightness, a), np.full_like(lightness, b)], -1)
    return lab_to_uint8(lab.astype(np.float32))


def _synthetic(name: str) -> np.ndarray:
    """Extremes built on the bundled greyscale ``camera`` photograph (real structure):
    full tonal range at almost no chroma, a pale and a dark tonal range with a faint
    cast, and a flat poster of two saturated colours."""
    from skimage import data

    grey = data.camera().astype(np.float32) / 255.0
    if name == "near_monochrome":
        return _lab_image(grey * 100.0, 1.5, 4.0)
    if name == "high_key":
        return _lab_image(72.0 + 26.0 * grey, 2.0, 6.0)
    if name == "low_key":
        return _lab_image(4.0 + 26.0 * grey, 3.0, -12.0)
    if name == "poster":
        poster = np.empty((256, 256, 3), np.uint8)
        rows, cols = np.mgrid[0:256, 0:256]
        poster[:] = (20, 60, 200)
        poster[cols > rows * 0.8 + 40] = (230, 30, 40)
        return poster
    raise ValueError(f"unknown synthetic reference {name!r}")


def reference(name: str) -> np.ndarray:
    """A reference as uint8 RGB at its own size (RGBA flattened onto white, as a browser
    shows it)."""
    from skimage import data

    if name in SYNTHETIC:
        return _synthetic(name)
    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        return left if name.endswith("left") else right
    image = np.asarray(getattr(data, name)())
    if image.shape[2] == 4:
        alpha = image[..., 3:].astype(np.float32) / 255.0
        image = np.round(image[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


def delivered_pixels(pixels: np.ndarray, model: str, prompt: str, seed: int) -> np.ndarray:
    """``pixels`` finished as ``serving.core.assets`` finishes an agentic asset (invisible mark
    from the request's provenance key, PNG), decoded back to uint8 RGB."""
    from PIL import Image

    from pipelines.finishing import FinishOptions, finish_image
    from pipelines.watermark import provenance_payload
    from serving.core.assets.service import ImageRecord, license_required

    height, width = pixels.shape[:2]
    record = ImageRecord(
        kind="agentic", model=model, prompt=prompt, seed=seed, width=width, height=height
    )
    options = FinishOptions(
        payload=provenance_payload(record.provenance_key()),
        metadata={"Software": "Kiln", "kiln:kind": "agentic"},
        visible=license_required("agentic"),
    )
    finished = finish_image(pixels, options)
    return np.asarray(Image.open(io.BytesIO(finished.delivered)).convert("RGB"))


def measure(
    name: str, ref: np.ndarray, run_agent: Callable[[np.ndarray], tuple], model: str, seed: int
) -> dict:
    """Every figure of one reference's row."""
    from agentic.finishing import finish

    candidate, recipe = run_agent(ref)
    raw, knobs = candidate.raw, candidate.knobs
    doubled = np.repeat(np.repeat(candidate.pixels, 2, axis=0), 2, axis=1)
    columns = {
        "grading": finish(raw, recipe, {**knobs, "palette": 0.0}),
        "palette": finish(raw, recipe, {**knobs, "grading": 0.0}),
        "both": candidate.pixels,
        "delivered": delivered_pixels(candidate.pixels, model, PROMPT, candidate.seed),
        "delivered 2x": delivered_pixels(doubled, model, PROMPT, candidate.seed),
    }
    sweep = {
        s: finish(raw, recipe, {**knobs, "grading": s, "palette": s}) if s < 1.0 else None
        for s in STRENGTHS
    }
    sweep[1.0] = candidate.pixels
    cuts = {s: moment_cut(raw, pixels, ref) for s, pixels in sweep.items()}
    rising = list(cuts.values())
    final = columns["delivered"]
    mask = skin_or_neutral(final) | skin_or_neutral(raw)
    raw2x = np.repeat(np.repeat(raw, 2, axis=0), 2, axis=1)
    final2x = columns["delivered 2x"]
    mask2x = skin_or_neutral(final2x) | skin_or_neutral(raw2x)
    return {
        "name": name,
        "plain": moment_distance(raw, ref),
        "plain_de": mean_delta_e(raw, ref),
        "cut": {k: moment_cut(raw, v, ref) for k, v in columns.items()},
        "de": {k: mean_delta_e(v, ref) for k, v in columns.items()},
        "sweep": cuts,
        "monotone": all(a <= b + 1e-9 for a, b in zip(rising, rising[1:], strict=False)),
        "clip_plain": clipped_share(raw, mask),
        "clip_final": clipped_share(final, mask),
        "clip_final2x": clipped_share(final2x, mask2x),
        "near_ref": near_extreme_share(ref, skin_or_neutral(ref)),
        "near_plain": near_extreme_share(raw, mask),
        "near_final": near_extreme_share(final, mask),
        "knobs": knobs,
    }


def _row(r: dict) -> str:
    cut, de = r["cut"], r["de"]
    cells = [f"{r['name']:<21}", f"{r['plain']:6.2f} {r['plain_de']:5.1f}"]
    cells += [f"{cut[k] * 100:6.1f}% {de[k]:4.1f}" for k in ("grading", "palette", "both")]
    cells += [f"{cut[k] * 100:6.1f}% {de[k]:4.1f}" for k in ("delivered", "delivered 2x")]
    cells.append(" ".join(f"{r['sweep'][s] * 100:5.1f}" for s in STRENGTHS[:-1]))
    rise = (r["clip_final"] - r["clip_plain"]) * 100
    rise2x = (r["clip_final2x"] - r["clip_plain"]) * 100
    cells.append("yes" if r["monotone"] else "NO ")
    cells.append(
        f"{r['clip_plain'] * 100:5.1f} -> {r['clip_final'] * 100:5.1f} ({rise:+.1f}), "
        f"2x {r['clip_final2x'] * 100:5.1f} ({rise2x:+.1f})"
    )
    cells.append(
        f"{r['near_ref'] * 100:5.1f} | {r['near_plain'] * 100:5.1f} -> {r['near_final'] * 100:5.1f}"
    )
    return " | ".join(cells)


HEADER = (
    f"{'reference':<21} | plain d  ΔE  | grading   ΔE | palette   ΔE | both      ΔE | "
    "delivered ΔE | deliv. 2x ΔE | cut % at 0.25 0.5 0.75 | mono | "
    "clip skin/neutral %, plain -> delivered, 2x | near ends %: reference | plain -> delivered"
)


def report(rows: list[dict], label: str) -> None:
    """Print one set's rows."""
    print(f"-- {label}")
    for r in rows:
        print(_row(r))


def summary(rows: list[dict], seconds: float) -> None:
    """The targets' lines for one resolution's rows."""
    reported = [r for r in rows if r["name"] not in TUNING]
    for column in ("delivered", "delivered 2x") if reported else ():
        cuts = [r["cut"][column] for r in reported]
        below = sum(cut < CUT_TARGET for cut in cuts)
        print(
            f"reported: {len(cuts)}; {column} cut median {statistics.median(cuts):.1%} "
            f"(target >= {MEDIAN_TARGET:.0%}), min {min(cuts):.1%}, "
            f"{below} under {CUT_TARGET:.0%}"
        )
    monotone = sum(r["monotone"] for r in rows)
    clipping = sum(
        max(r["clip_final"], r["clip_final2x"]) - r["clip_plain"] <= CLIP_POINTS / 100 for r in rows
    )
    print(
        f"monotone in strength: {monotone}/{len(rows)}; skin/neutral clipping within "
        f"{CLIP_POINTS:.0f} points of plain (delivered and 2x): {clipping}/{len(rows)}; "
        f"{seconds:.1f} s"
    )


def resolutions(spec, asked: str | None) -> list[str]:
    """``asked`` (comma-separated), or the model's default and its smallest resolution of
    at least 256 px, the invisible mark's threshold."""
    if asked:
        return asked.split(",")
    from pipelines.watermark import INVISIBLE_MIN_SIDE

    chosen = [spec.default_resolution]
    marked = [r for r, side in spec.resolutions.items() if side >= INVISIBLE_MIN_SIDE]
    if marked and spec.resolutions[spec.default_resolution] < INVISIBLE_MIN_SIDE:
        chosen.append(min(marked, key=spec.resolutions.__getitem__))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-sd15")
    parser.add_argument(
        "--resolution", default=None, help="resolutions of the model, comma-separated"
    )
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--photos", default=None, help="comma-separated references")
    parser.add_argument("--smoke", action="store_true", help=f"only {', '.join(SMOKE)}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from agentic.agent import Agent, AgentRequest, Budget
    from agentic.recipe import Choice, extract_recipe
    from pipelines.engine import Engine
    from weights.catalog import load_catalog
    from weights.tiny import ensure_tiny_components, ensure_tiny_models

    names = SMOKE if args.smoke else (*TUNING, *REPORTED, *SYNTHETIC)
    if args.photos:
        names = tuple(args.photos.split(","))
    home = Path(os.environ.get("KILN_HOME", "~/.kiln")).expanduser()
    catalog = load_catalog(home)
    spec = catalog.get(args.model)
    controlnet = catalog.first_component("controlnet", spec.family)
    components = (controlnet,) if controlnet else ()
    ensure_tiny_models([spec])
    ensure_tiny_components(components)
    engine = Engine.load(spec, device="cpu", components=components)
    choice = Choice(sources=(0,), strength=1.0)

    def run_agent(ref: np.ndarray, resolution: str) -> tuple:
        recipe = extract_recipe([ref], {"grading": choice, "palette": choice})
        agent = Agent(
            spec, recipe, lambda p: list(engine.generate([p])[0].images), reference_pixels=[ref]
        )
        request = AgentRequest(
            prompt=PROMPT,
            seed=args.seed,
            resolution=resolution,
            controlnet=controlnet.id if controlnet else None,
        )
        return agent.run(request, Budget(candidates=2, rounds=1)).images[0], recipe

    for resolution in resolutions(spec, args.resolution):
        started = time.perf_counter()
        rows = [
            measure(
                name,
                reference(name),
                functools.partial(run_agent, resolution=resolution),
                spec.id,
                args.seed,
            )
            for name in names
        ]
        print(
            f"{spec.id} {resolution}, seed {args.seed}, prompt {PROMPT!r}, grading and palette 1.0"
        )
        print(HEADER)
        groups = (
            ("tuning set", [r for r in rows if r["name"] in TUNING]),
            ("reported: scikit-image colour photographs",
             [r for r in rows if r["name"] not in TUNING and r["name"] not in SYNTHETIC]),
            ("reported: synthetic extremes", [r for r in rows if r["name"] in SYNTHETIC]),
        )  # fmt: skip
        for label, group in groups:
            if group:
                report(group, label)
        summary(rows, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
