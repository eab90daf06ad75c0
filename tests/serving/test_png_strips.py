"""A PNG decoded straight to a reduced size: the same pixels as Pillow's whole decode and
``reduce``, with memory bounded by the result rather than by the image."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.core.exports.png_strips import decode_reduced, png_size

ROOT = Path(__file__).resolve().parents[2]


def png(image: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **options)
    return buf.getvalue()


def noisy(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """Noise over flat bands: rows whose best PNG filter differs (None, Sub, Up, Paeth)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    image[: height // 3] = image[:1]  # repeated rows: Up
    image[height // 3 : height // 2, :] = image[height // 3 : height // 2, :1]  # flat: Sub
    return image


def whole_then_reduced(data: bytes, factor: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    return np.asarray(image.reduce(factor) if factor > 1 else image)


@pytest.mark.parametrize(
    ("height", "width", "channels", "factor", "level"),
    [
        (300, 257, 4, 3, 6),  # strips of 66 rows, a partial box at both edges
        (301, 500, 3, 2, 1),
        (130, 70, 3, 4, 9),
        (1000, 999, 4, 7, 0),  # stored blocks; many IDAT chunks
        (64, 64, 4, 1, 6),  # nothing to reduce
    ],
)
def test_the_same_pixels_as_a_whole_decode_then_reduce(height, width, channels, factor, level):
    data = png(Image.fromarray(noisy(height, width, channels)), compress_level=level)
    assert png_size(data) == (width, height)
    reduced = decode_reduced(data, factor)
    assert reduced.shape == (-(-height // factor), -(-width // factor), channels)
    assert np.array_equal(reduced, whole_then_reduced(data, factor))


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(noisy(90, 70, 3)).convert("L"),
        Image.fromarray(noisy(90, 70, 3)).convert("P", palette=Image.Palette.ADAPTIVE),
        Image.fromarray(noisy(90, 70, 1)[..., 0].astype(np.uint16) * 257).convert("I;16"),
    ],
    ids=["grey", "palette", "16-bit"],
)
def test_other_pngs_are_decoded_whole_to_rgb_or_rgba(image: Image.Image):
    data = png(image)
    assert np.array_equal(decode_reduced(data, 2), whole_then_reduced(data, 2))


def test_a_palette_with_transparency_keeps_its_alpha():
    image = Image.fromarray(noisy(40, 40, 3)).convert("P", palette=Image.Palette.ADAPTIVE)
    reduced = decode_reduced(png(image, transparency=0), 2)
    assert reduced.shape == (20, 20, 4)


def test_bytes_that_are_no_png_or_a_cut_one_are_refused():
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(40))
    data = png(Image.fromarray(noisy(400, 300, 3)), compress_level=0)
    with pytest.raises(ValueError, match="ends after"):
        decode_reduced(data[: len(data) // 2], 2)


# A fresh process: the resident memory decode_reduced adds at its peak, in MiB.
PEAK_OF_ONE_DECODE = """
import ctypes, sys
from pathlib import Path
from serving.core.exports.png_strips import decode_reduced

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(field + ":"))

data = Path(sys.argv[1]).read_bytes()
ctypes.CDLL("libc.so.6").malloc_trim(0)
Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS")
pixels = decode_reduced(data, 3)
print((status("VmHWM") - before) / 1024, pixels.shape)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_memory_is_bounded_by_the_result_not_the_image(tmp_path: Path):
    side = 6144  # 144 MiB of RGBA decoded whole; 16 MiB once reduced to 2048 px
    image = np.zeros((side, side, 4), np.uint8)
    q = side // 8
    image[q : 3 * q, q : 4 * q] = (220, 30, 30, 255)
    image[4 * q : 7 * q, 2 * q : 5 * q] = (30, 160, 40, 200)
    path = tmp_path / "big.png"
    Image.fromarray(image).save(path, compress_level=1)
    del image
    done = subprocess.run(
        [sys.executable, "-c", PEAK_OF_ONE_DECODE, str(path)], capture_output=True, text=True,
        check=True, cwd=ROOT,
    )  # fmt: skip
    peak_mib = float(done.stdout.split()[0])
    assert "(2048, 2048, 4)" in done.stdout
    # The result and its array copy (32 MiB) and a few strips; a whole decode is 144+ MiB.
    assert peak_mib < 96, peak_mib
