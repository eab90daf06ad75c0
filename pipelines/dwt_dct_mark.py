"""The invisible mark's encoder and decoder, in invisible-watermark's ``dwtDct`` format
(``pipelines.watermark`` is the public API: payloads, sizes, when to mark).

invisible-watermark's dwtDct ("EmbedMaxDct", scales [0, 36, 36], 4x4 blocks) works on
the U channel (OpenCV's YUV) of an image: the Haar DWT's LL band is cut into 4x4 blocks
of coefficients (8x8 pixels), and in each block the largest |coefficient| but the first
carries one payload bit, repeated over the blocks: |c| mod 36 in its upper half reads 1,
in its lower half 0. ``decode_bits`` is the library's decoder on all blocks at once
(bit-identical, tested), and the library's decoder reads Kiln's mark (given float BGR,
as diffusers' SDXL watermarker works; a uint8 image takes OpenCV's integer YUV).

The library's encoder is not what Kiln embeds with (issue 17 measured one pass of it on
15 graded 256 px images: blue moved by 0.7-24 codes on average, up to 254, and up to 24
points more of the skin-like/neutral pixels clipped): (1) it puts the DWT's detail
bands back swapped, (v1, h1) for (h1, v1), which transposes every 2x2 block of U,
payload or not: on an image with chroma texture that alone was nearly all the change;
(2) it moves the carrier to the centre of its half-cell within the same 36-wide cell
(up to 27 away, |c| shrinking for 0 and growing for 1); (3) channels leaving 0-255 are
clipped, the bit may not read back, and the whole image was marked again, up to six
times. ``embed_pass`` instead:

- changes only the carrier coefficient's four pixels (so no detail band moves), with Y
  and V held (blue and a little green move, as the library's own change does);
- moves the carrier to the nearest value that reads its bit at least ``_GUARD`` inside
  the half-cell and ``_MARGIN`` above every other readable coefficient, trying the
  block's ``_CARRIERS`` strongest coefficients and taking the cheapest;
- only where the four pixels have room: no channel is pushed to 0 or 255 (a pixel
  already there stays); the change is spread over the pixels with room, at most
  ``_MAX_STEP`` of U each; a block with no room is left alone (its vote is noise);
- takes the change back off the block's other 60 pixels (1/15 of it on each other
  coefficient), so no 8x8 block's mean colour moves; those small steps are rounded by
  an ordered dither so the rounding does not bias them either.

Measured (benchmarks/RESULTS.md, issue 17) on the benchmark's 15 graded 256 px images
and 22 photograph crops at 256 and 512 px: blue moves 0.86-0.88 codes on average (the
library's encoder: 4.7 and 2.5), the mean a*/b* by at most 0.07 (up to 3.1), no new 0
or 255, and every image reads back (the library's: 11/15, 6/11 and 8/11 even after
re-marking up to six times).
"""

from __future__ import annotations

import numpy as np

from pipelines.kept_per_size import KeptPerSize

_SCALE = 36.0  # the library's step on U; Y is not marked (scale 0), V never read
_BLOCK = 4
_GUARD = 3.0  # LL units a carrier keeps from its half-cell's edges (rounding moves < 1)
_MARGIN = 2.0  # LL units a carrier keeps above the block's other readable coefficients
_CARRIERS = 4  # the block's strongest coefficients tried as its carrier
_MAX_STEP = 12.0  # most one pixel's U moves (about 24 codes of blue)
_ROOM = (1.0, 254.0)  # a channel is not moved onto 0 or 255 (one already there may stay)
_SLACK = 0.3  # of U per pixel, kept in hand for rounding
# d(B, G)/dU with Y and V held (OpenCV's YUV <-> BGR), and dU/d(B, G, R).
_DB, _DG = 2.032, -0.395
_DU = np.array([0.492 * (1 - 0.114), -0.492 * 0.587, -0.492 * 0.299])


def _bayer(size: int) -> np.ndarray:
    """An ordered-dither threshold matrix, ``size`` x ``size``, values in (0, 1)."""
    matrix = np.zeros((1, 1))
    while matrix.shape[0] < size:
        matrix = np.block([[4 * matrix, 4 * matrix + 2], [4 * matrix + 3, 4 * matrix + 1]])
    return (matrix + 0.5) / matrix.size


_DITHER = _bayer(8)


def _tiled_dither(height: int, width: int) -> np.ndarray:
    """``_DITHER`` tiled over an image of ``height`` x ``width``, read-only, in float32
    (its values are exact there)."""
    tiled = np.tile(_DITHER.astype(np.float32), (height // 8 + 1, width // 8 + 1))
    tiled = np.ascontiguousarray(tiled[:height, :width])
    tiled.flags.writeable = False
    return tiled


# Kept for the last few sizes (a server marks the same few over and over) up to
# 2048x2048, 16 MiB each at most; a larger image's is tiled each time.
_dither_over = KeptPerSize(_tiled_dither, max_pixels=2048 * 2048)


def float_bgr(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB ``pixels`` as contiguous float32 BGR: OpenCV swaps the channels of the
    bytes (a tenth of the time numpy's strided copy into float32 takes), then numpy
    widens them; the values are the same either way."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR).astype(np.float32)


def _strongest_first(values: np.ndarray, count: int) -> np.ndarray:
    """Per row of ``values``, the indices of its ``count`` largest, largest first, ties in
    index order: what a stable descending ``argsort`` starts with, at half its time
    (``count`` passes of ``argmax``, which takes the first of equal values)."""
    remaining = values.copy()
    rows = np.arange(len(values))
    ranked = np.empty((len(values), count), np.intp)
    for k in range(count):
        ranked[:, k] = best = np.argmax(remaining, axis=1)
        remaining[rows, best] = -np.inf
    return ranked


def _frame_blocks(frame: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The full 4x4 blocks of ``frame`` as rows of 16, in the library's row-major order."""
    rows, cols = frame.shape[0] // _BLOCK, frame.shape[1] // _BLOCK
    blocks = frame[: rows * _BLOCK, : cols * _BLOCK].reshape(rows, _BLOCK, cols, _BLOCK)
    return blocks.transpose(0, 2, 1, 3).reshape(-1, _BLOCK * _BLOCK), (rows, cols)


def _quad_sums(frame: np.ndarray, rows: int, cols: int, dtype: type) -> np.ndarray:
    """Each 2x2 pixel group's sum (the Haar LL band, times 2) over the full 8x8 blocks of
    ``frame``, as (4 rows, 4 cols) a block: added in ``dtype`` in the order top-left,
    top-right, bottom-left, bottom-right (the order numpy's sum over a group's 4 pixels
    took when they were gathered per block: the same float32 roundings)."""
    cut = frame[: rows * 8, : cols * 8].astype(dtype, copy=False)
    return ((cut[0::2, 0::2] + cut[0::2, 1::2]) + cut[1::2, 0::2]) + cut[1::2, 1::2]


def _carrier_pixels(carrier: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices, (blocks, 4), of each block's carrier coefficient's 2x2
    pixels (top-left, top-right, bottom-left, bottom-right); blocks in the order of
    ``_frame_blocks``, carriers 0-15 row-major in the block's 4x4 LL coefficients."""
    block_row, block_col = np.divmod(np.arange(len(carrier)), cols)
    coefficient_row, coefficient_col = np.divmod(carrier, _BLOCK)
    top = 8 * block_row + 2 * coefficient_row
    left = 8 * block_col + 2 * coefficient_col
    dy, dx = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    return top[:, None] + dy, left[:, None] + dx


def _strongest(blocks: np.ndarray) -> np.ndarray:
    """Per block, the index of the largest |value| but the first (as the library picks)."""
    return np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1


def embed_pass(pixels: np.ndarray, bits: np.ndarray, any_direction: bool) -> np.ndarray:
    """One embedding of ``bits`` into uint8 RGB ``pixels`` (see the section's comment).
    ``any_direction`` also lets a carrier's pixels move in luminance (each channel toward
    the end that moves U, by its share of the room): only for a second pass, where
    saturated or flat areas left too few carriers for every bit to read back."""
    import cv2

    rows, cols = pixels.shape[0] // 8, pixels.shape[1] // 8
    bgr = float_bgr(pixels)
    u = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)[..., 1]
    if any_direction:
        low, high = np.minimum(bgr, _ROOM[0]), np.maximum(bgr, _ROOM[1])
        toward_up = np.where(_DU > 0, high - bgr, low - bgr)  # channel moves that raise U
        toward_down = np.where(_DU > 0, low - bgr, high - bgr)
        room_up, room_down = toward_up @ _DU, -(toward_down @ _DU)
    else:  # B moves _DB and G _DG per unit of U; neither onto 0 or 255
        blue, green, _ = cv2.split(bgr)  # contiguous planes: numpy is faster on them
        blue_up, green_down = np.maximum(_ROOM[1] - blue, 0), np.maximum(green - _ROOM[0], 0)
        blue_down, green_up = np.maximum(blue - _ROOM[0], 0), np.maximum(_ROOM[1] - green, 0)
        room_up = np.minimum(blue_up / _DB, green_down / -_DG)
        room_down = np.minimum(blue_down / _DB, green_up / -_DG)
    room_up = np.clip(room_up - _SLACK, 0.0, _MAX_STEP)
    room_down = np.clip(room_down - _SLACK, 0.0, _MAX_STEP)
    coefficients, _ = _frame_blocks(_quad_sums(u, rows, cols, np.float64) / 2.0)
    block_up, _ = _frame_blocks(_quad_sums(room_up, rows, cols, np.float32) / 2.0)
    block_down, _ = _frame_blocks(_quad_sums(room_down, rows, cols, np.float32) / 2.0)
    change, carrier = _choose_carriers(coefficients, block_up, block_down, bits)
    at = _carrier_pixels(carrier, cols)
    room = np.where(change[:, None] >= 0.0, room_up[at], room_down[at])
    # U's change per pixel: the carrier's 4 pixels share its move (water-filled under
    # their room); the other 60 of the 8x8 block take it back (-change/30 each, so the
    # other 15 coefficients move -change/15); zero outside the full blocks.
    du = np.zeros(pixels.shape[:2], np.float32)
    compensation = (-change / 30.0).astype(np.float32).reshape(rows, 1, cols, 1)
    du[: rows * 8, : cols * 8] = np.broadcast_to(compensation, (rows, 8, cols, 8)).reshape(
        rows * 8, cols * 8
    )
    du[at] = np.sign(change)[:, None] * _water_fill(room, 2.0 * np.abs(change))
    # Carriers rounded to nearest (their value is what is read); the compensation's small
    # steps dithered, so their rounding errors average out over each block. A pixel with
    # no change stays as it was (x + 0 rounds to x either way).
    threshold = _dither_over(*pixels.shape[:2])
    marked = pixels.copy()
    for channel, gain in ((2, _DB), (1, _DG)):  # RGB's blue and green; red does not move
        value = pixels[..., channel].astype(np.float32)
        moved = value + gain * du
        # In float64, as ever: the sum is exact there, so no rounding moves a floor.
        rounded = np.floor(np.add(moved, threshold, dtype=np.float64))
        rounded[at] = np.rint(moved[at])  # the carriers' pixels only: 4 of each block's 64
        marked[..., channel] = np.clip(
            rounded, np.minimum(value, _ROOM[0]), np.maximum(value, _ROOM[1]), out=rounded
        )
    if any_direction:
        carried = np.zeros(pixels.shape[:2], bool)
        carried[at] = True
        toward = np.where((du >= 0.0)[..., None], toward_up, toward_down)[carried]
        room_all = np.where(du >= 0.0, toward_up @ _DU, toward_down @ _DU)[carried]
        share = np.divide(du[carried], room_all, out=np.zeros_like(room_all), where=room_all != 0)
        moved = bgr[carried] + toward * share[:, None]
        marked[carried] = np.clip(np.rint(moved), low[carried], high[carried])[:, ::-1]
    return marked


def _choose_carriers(
    coefficients: np.ndarray, room_up: np.ndarray, room_down: np.ndarray, bits: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per block of (blocks, 16) LL ``coefficients``: the signed change of the carrier
    coefficient and its index, the cheapest among the ``_CARRIERS`` strongest that reads
    the block's bit with ``_GUARD`` and ``_MARGIN`` to spare and fits in its pixels' room
    (LL units, up and down); a change of 0 where none fits. Among equal costs the first
    candidate wins, in the order carrier (strongest first), cell step, target."""
    count = len(coefficients)
    index = np.arange(count)
    bit = bits[index % len(bits)].astype(np.float64)
    readable = np.abs(coefficients)
    readable[:, 0] = -1.0  # the first coefficient is never read
    ranked = _strongest_first(readable, _CARRIERS)
    strongest = readable[index, ranked[:, 0]]
    second = readable[index, ranked[:, 1]]
    # A block's candidates at once: (cell steps, 1) against (blocks,), then 2 targets.
    steps = np.array([-1.0, 0.0, 1.0, 2.0])[:, None]
    best_cost = np.full(count, np.inf)
    best_change = np.zeros(count)
    best_carrier = ranked[:, 0].copy()
    for rank, carrier in enumerate(ranked.T):
        value = coefficients[index, carrier]
        size = np.abs(value)
        sign = np.where(value < 0.0, -1.0, 1.0)
        # The largest readable coefficient but the carrier: the strongest, or for the
        # strongest itself the second (ties give the same value either way).
        runner = second if rank == 0 else strongest
        cells = np.floor(size / _SCALE) + steps  # the carrier's cell and its neighbours
        low = cells * _SCALE + 0.5 * _SCALE * bit + _GUARD
        high = low + 0.5 * _SCALE - 2.0 * _GUARD
        # Stay where it is, or just clear the runner-up (which the compensation lowers by
        # 1/15 of the raise).
        clear = (runner + _MARGIN - size / 15.0) * 15.0 / 14.0
        target = np.stack([np.clip(size, low, high), np.clip(clear, low, high)], axis=1)
        change = sign * (target - size)  # (steps, targets, blocks)
        fits = (cells >= 0.0)[:, None] & (target >= runner + np.abs(change) / 15.0 + _MARGIN)
        room = np.where(change >= 0.0, room_up[index, carrier], room_down[index, carrier])
        fits &= np.abs(change) <= room
        cost = np.where(fits, np.abs(change), np.inf).reshape(-1, count)
        first = np.argmin(cost, axis=0)  # the first cheapest of this carrier's candidates
        cost = cost[first, index]
        better = cost < best_cost
        best_cost = np.where(better, cost, best_cost)
        best_change = np.where(better, change.reshape(-1, count)[first, index], best_change)
        best_carrier = np.where(better, carrier, best_carrier)
    return np.where(np.isfinite(best_cost), best_change, 0.0), best_carrier


def _water_fill(room: np.ndarray, need: np.ndarray) -> np.ndarray:
    """(n, 4) shares of ``need`` (n) under each pixel's ``room``: equal where there is
    room, the rest on the pixels that still have some."""
    given = np.zeros_like(room)
    open_ = np.ones(room.shape, bool)
    for _ in range(room.shape[1]):
        left = need - given.sum(axis=1)
        share = left / np.maximum(open_.sum(axis=1), 1)
        given += np.where(open_, np.minimum(room - given, share[:, None]), 0.0)
        open_ &= room - given > 1e-9
    return given


def haar_ll(frame: np.ndarray) -> np.ndarray:
    """The Haar DWT's LL band of an even-sized float32 ``frame``, bit for bit what
    ``pywt.dwt2(frame, "haar")[0]`` gives (its filter pass down the rows, then along
    them, each tap rounded to float32), in about a twentieth of its time: PyWavelets
    computes all four bands."""
    tap = np.float32(np.sqrt(0.5))
    a, b = frame[0::2, 0::2], frame[0::2, 1::2]
    c, d = frame[1::2, 0::2], frame[1::2, 1::2]
    return (a * tap + c * tap) * tap + (b * tap + d * tap) * tap


def decode_bits(bgr: np.ndarray, num_bits: int) -> np.ndarray:
    import cv2

    rows, cols = bgr.shape[:2]
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    blocks, _ = _frame_blocks(haar_ll(yuv[: rows // 4 * 4, : cols // 4 * 4, 1]))
    value = np.abs(blocks[np.arange(len(blocks)), _strongest(blocks)])
    score = (value % _SCALE > 0.5 * _SCALE).astype(np.float64)
    votes = np.bincount(np.arange(len(blocks)) % num_bits, weights=score, minlength=num_bits)
    counts = np.bincount(np.arange(len(blocks)) % num_bits, minlength=num_bits)
    return (votes / counts * 255 > 127).astype(np.uint8)
