"""Upscaling with the tiny ESRGAN-family model: exact 8K sizes, seamless tiles, bounded
memory, chaining, and the explicit Lanczos method."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.params import ParamError
from pipelines.upscale import (
    MAX_LONG_SIDE,
    UpscaleParams,
    Upscaler,
    UpscalerMissing,
    passes_for,
    target_size,
    tile_starts,
    upscale,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def upscaler_path(catalog) -> Path:
    return catalog.first_component("upscaler").source


@pytest.fixture(scope="module")
def upscaler(upscaler_path: Path) -> Upscaler:
    return Upscaler.load(upscaler_path)


def gradient(height: int, width: int) -> np.ndarray:
    """A smooth diagonal colour gradient: any seam shows as a jump."""
    y = np.linspace(0.0, 1.0, height)[:, None]
    x = np.linspace(0.0, 1.0, width)[None, :]
    image = np.stack([40 + 170 * x + 0 * y, 40 + 170 * y + 0 * x, 200 - 80 * (x + y) / 2], -1)
    return np.rint(image).astype(np.uint8)


def test_the_catalog_upscaler_is_a_4x_esrgan_family_model(upscaler: Upscaler, upscaler_path):
    assert upscaler_path.suffix == ".safetensors"
    assert upscaler.scale == 4
    assert upscaler.descriptor.architecture.name == "RealESRGAN Compact"


def test_an_8k_upscale_has_exactly_the_requested_size(upscaler: Upscaler):
    image = gradient(563, 1000)  # one 4x pass to 4000, then Lanczos to 7680
    out = upscale(image, UpscaleParams(long_side=MAX_LONG_SIDE), upscaler)
    assert out.shape == (4324, 7680, 3) and out.dtype == np.uint8
    # The picture survives: the enlarged gradient still runs the same way.
    assert out[:, :100, 0].mean() < out[:, -100:, 0].mean() - 100


def test_portrait_targets_keep_the_aspect_ratio():
    assert target_size(1000, 563, 7680) == (7680, 4324)
    assert target_size(563, 1000, 7680) == (4324, 7680)
    assert target_size(512, 512, 7680) == (7680, 7680)


def test_tiles_blend_without_seams_on_a_gradient(upscaler: Upscaler):
    image = gradient(200, 300)
    tile, overlap = 64, 8
    out = upscaler.run_tiled(image, tile, overlap).astype(np.int32)
    whole = upscaler.run(image).astype(np.int32)
    s = upscaler.scale
    # Where tiles meet (each start but the first), the jump across the border row or
    # column is no bigger than anywhere else in the picture.
    step_y = np.abs(np.diff(out, axis=0)).max(axis=(1, 2))
    step_x = np.abs(np.diff(out, axis=1)).max(axis=(0, 2))
    typical = max(np.median(step_y), np.median(step_x))
    for y0 in tile_starts(200, tile, overlap)[1:]:
        for row in range(y0 * s - 2, (y0 + overlap) * s + 2):
            assert step_y[row] <= typical + 2, f"seam at row {row}"
    for x0 in tile_starts(300, tile, overlap)[1:]:
        for col in range(x0 * s - 2, (x0 + overlap) * s + 2):
            assert step_x[col] <= typical + 2, f"seam at column {col}"
    # And the tiled result is the untiled one, up to rounding.
    assert np.abs(out - whole).max() <= 2


def test_hard_tile_edges_would_show(upscaler: Upscaler):
    """The check above can fail: tiles without overlap differ from the whole image at
    their borders (the convolutions see zero padding there)."""
    image = gradient(200, 300)
    hard = upscaler.run_tiled(image, 64, 0).astype(np.int32)
    whole = upscaler.run(image).astype(np.int32)
    assert np.abs(hard - whole).max() > np.abs(upscaler.run_tiled(image, 64, 8) - whole).max()


def test_chaining_takes_the_factor_as_often_as_it_stays_within_twice_the_target():
    assert passes_for(1024, 7680, 4) == 1  # 4096, then Lanczos up 1.875x
    assert passes_for(256, 4096, 4) == 2  # 1024, 4096 exactly
    assert passes_for(512, 1024, 4) == 1  # 2048, then Lanczos down 2x
    assert passes_for(512, 900, 4) == 0  # 2048 is past twice 900: Lanczos alone
    assert passes_for(1024, 512, 4) == 0  # shrinking


def test_two_chained_passes_reach_the_exact_size(upscaler: Upscaler):
    calls = []
    out = upscale(
        gradient(72, 128),
        UpscaleParams(2048, tile=64, overlap=8),
        upscaler,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert out.shape == (1152, 2048, 3)
    # Pass 1 tiles a 128x72 image (3x2 tiles), pass 2 a 512x288 one (9x5): all reported.
    assert calls[-1] == (6 + 45, 51) and len(calls) == 51


def test_an_alpha_channel_is_resampled_alongside(upscaler: Upscaler):
    rgba = np.dstack([gradient(64, 96), np.zeros((64, 96), np.uint8)])
    rgba[16:48, 24:72, 3] = 255
    out = upscale(rgba, UpscaleParams(384), upscaler)
    assert out.shape == (256, 384, 4)
    assert out[128, 192, 3] == 255 and out[5, 5, 3] == 0


def test_lanczos_is_an_explicit_method_and_the_model_never_silently_missing():
    image = gradient(50, 80)
    assert upscale(image, UpscaleParams(160, method="lanczos")).shape == (100, 160, 3)
    with pytest.raises(UpscalerMissing, match="lanczos"):
        upscale(image, UpscaleParams(160))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (UpscaleParams(MAX_LONG_SIDE + 1), "long_side"),
        (UpscaleParams(0), "long_side"),
        (UpscaleParams(512, method="bicubic"), "method"),
        (UpscaleParams(512, tile=32, overlap=16), "tile"),
    ],
)
def test_bad_parameters_name_their_field(params: UpscaleParams, field: str):
    with pytest.raises(ParamError) as caught:
        params.checked()
    assert caught.value.param == field


def test_pickle_upscalers_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="safetensors"):
        Upscaler.load(tmp_path / "RealESRGAN_x4plus.pth")


# Peak memory in a fresh process: Linux's high-water mark of resident memory (VmHWM),
# reset before each run (clear_refs 5) after handing freed memory back (malloc_trim).
_MEASURE = """
import ctypes, json, sys
import numpy as np
from pipelines.upscale import Upscaler, UpscaleParams, upscale

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

upscaler = Upscaler.load(sys.argv[1])
image = np.random.default_rng(0).integers(0, 256, (72, 128, 3), dtype=np.uint8)
upscale(image, UpscaleParams(256, tile=64), upscaler)  # warm up torch's allocators
results = {}
for name, long_side, tile in (("small", 512, 64), ("large", 2048, 64), ("untiled", 2048, None)):
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS")
    out = upscale(image, UpscaleParams(long_side, tile=tile), upscaler)
    results[name] = {"grown_mb": status("VmHWM") - before, "output_mb": out.nbytes / 2**20}
    del out
print(json.dumps(results))
"""


def test_peak_memory_of_a_tiled_upscale_stays_bounded_as_the_target_grows(upscaler_path):
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(upscaler_path)],
        capture_output=True, text=True, cwd=ROOT, check=True, timeout=300,
    )  # fmt: skip
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    small, large, untiled = runs["small"], runs["large"], runs["untiled"]
    # 512 -> 2048 is 16x the pixels. Beyond the images themselves (the output and the
    # previous pass's, 1.25 outputs) a tiled pass holds one tile's activations and one
    # band of rows; the whole-image pass holds every activation of its input at once.
    overhead = large["grown_mb"] - 1.25 * large["output_mb"]
    assert overhead < 4 * large["output_mb"], runs
    assert large["grown_mb"] < 16 * max(small["grown_mb"], small["output_mb"]), runs
    assert untiled["grown_mb"] > 3 * large["grown_mb"], runs
