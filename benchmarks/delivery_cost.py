"""What delivering an image costs on the ingress CPU: marking, encoding, signing, storing.

Each generated image becomes an asset before the response goes out (pipelines/finishing.py,
serving/assets): the invisible provenance mark (dwtDct, with its read-back check), PNG
encoding with metadata, for style kinds a visibly marked preview, optionally a C2PA
manifest, and the content-addressed write. This prints, per image size, the median time of
each variant and its ratio to the plain PNG encode the ingress did before assets existed.

    .venv/bin/python benchmarks/delivery_cost.py [--sizes 512 1024] [--repeats 5] [--smoke]

Images are smooth gradients with pixel noise (what a generated image's statistics look
like to the watermark); the figures are CPU time on whatever machine runs this.

A second table compares PNG writers on the same images and on pure noise (a tiny model's
output): Pillow's encoder, which tries five filters on every row, against Kiln's
``pipelines.provenance.encode_png`` (one vectorised "Up" filter), both zlib level 1,
with the time ratio and the file sizes.

Another compares the deflate under every PNG Kiln writes (``pipelines.provenance.deflate``:
ISA-L where the ``isal`` package is installed) with zlib's, both at level 1, on the same
filtered rows: time, ratio and the output's size against the raw rows.

Another times what Kiln no longer does on every image, against what it does: c2pa's
default claim thumbnail in the C2PA manifest (Kiln signs without one: time and bytes
added to the file), and the visible mark's layer drawn afresh (Kiln keeps the last few
sizes' layers and only blends).

A last compares an order of 4 images delivered one after another (``Assets.prepare``
each: mark, PNG, store) with ``serving.core.assets.delivery.prepare_images``, which
finishes them side by side on the delivery pool, and prints the ratio.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import content_credentials, watermark  # noqa: E402
from pipelines.content_credentials import C2paSigner, embed_c2pa_manifest  # noqa: E402
from pipelines.finishing import FinishOptions, finish_image  # noqa: E402
from pipelines.provenance import DEFLATER, _filtered_rows, deflate, encode_png  # noqa: E402
from pipelines.throwaway_chain import make_throwaway_chain  # noqa: E402
from pipelines.watermark import (  # noqa: E402
    apply_visible_watermark,
    embed_invisible_watermark,
    provenance_payload,
)
from serving.core.assets import Assets, ImageRecord  # noqa: E402
from serving.core.assets.delivery import DELIVERY_THREADS, Made, prepare_images  # noqa: E402
from serving.core.assets.store import BlobStore  # noqa: E402
from serving.core.ledger import Ledger  # noqa: E402

logger = logging.getLogger("delivery_cost")

METADATA = {"kiln:model": "bench", "kiln:seed": "1", "kiln:asset_id": "ast_bench"}


def textured(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 220, size)
    base = np.stack([np.add.outer(ramp, ramp[::-1]) / 2] * 3, axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: imports, OpenCV's first call
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pillow_png(pixels: np.ndarray, metadata: dict[str, str] = METADATA) -> bytes:
    """The PNG Kiln wrote before its own writer: Pillow, zlib level 1, the same text."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", pnginfo=info, compress_level=1)
    return buf.getvalue()


def compare_png_writers(sizes: list[int], repeats: int) -> None:
    """Pillow's PNG encoder against ``encode_png``: median time, ratio, file size."""
    logger.info("")
    logger.info("| size | image | Pillow PNG | Kiln PNG | Pillow / Kiln | sizes (KiB) |")
    logger.info("|---|---|---|---|---|---|")
    for size in sizes:
        noise = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
        for name, pixels in (("textured", textured(size)), ("noise", noise)):
            pillow = median_s(lambda p=pixels: pillow_png(p), repeats)
            kiln = median_s(lambda p=pixels: encode_png(p, METADATA), repeats)
            kib = f"{len(pillow_png(pixels)) >> 10} / {len(encode_png(pixels, METADATA)) >> 10}"
            logger.info(
                "| %d² | %s | %.2f ms | %.2f ms | %.2fx | %s |",
                size, name, pillow * 1000, kiln * 1000, pillow / kiln, kib,
            )  # fmt: skip


def compare_deflaters(sizes: list[int], repeats: int) -> None:
    """zlib level 1 against ``deflate`` (ISA-L where installed) on an image's filtered
    rows: median time, ratio, and each output's size as a share of the raw rows."""
    logger.info("")
    logger.info("deflate: %s", DEFLATER)
    logger.info("| size | image | zlib level 1 | deflate (%s) | zlib / deflate | sizes |", DEFLATER)
    logger.info("|---|---|---|---|---|---|")
    for size in sizes:
        noise = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
        for name, pixels in (("textured", textured(size)), ("noise", noise)):
            rows = _filtered_rows(pixels)
            with_zlib = median_s(lambda r=rows: zlib.compress(r, 1), repeats)
            ours = median_s(lambda r=rows: deflate(r, 1), repeats)
            zlib_share = len(zlib.compress(rows, 1)) / len(rows)
            shares = f"{zlib_share:.3f} / {len(deflate(rows, 1)) / len(rows):.3f}"
            logger.info(
                "| %d² | %s | %.2f ms | %.2f ms | %.2fx | %s |",
                size, name, with_zlib * 1000, ours * 1000, with_zlib / ours, shares,
            )  # fmt: skip


def compare_skipped_work(sizes: list[int], repeats: int, signer: C2paSigner) -> None:
    """Work Kiln leaves out, timed against what it does instead, in one run: a C2PA
    manifest with c2pa's default claim thumbnail against Kiln's without (time and bytes
    added to the PNG), and the visible mark with its layer drawn afresh against the kept
    layer (one blend)."""
    logger.info("")
    logger.info("| size | work | as c2pa / before | as Kiln does it | ratio | bytes added |")
    logger.info("|---|---|---|---|---|---|")
    thumbnail = {"builder": {"thumbnail": {"enabled": True}}}
    kiln_settings = content_credentials._SIGNING_SETTINGS
    for size in sizes:
        pixels = textured(size)
        png = encode_png(pixels, METADATA)
        timed, added = {}, {}
        for label, settings in (("thumbnail", thumbnail), ("kiln", kiln_settings)):
            content_credentials._SIGNING_SETTINGS = settings
            try:
                sign = partial(embed_c2pa_manifest, png, signer, "ast_bench", METADATA)
                timed[label] = median_s(sign, repeats)
                added[label] = len(sign()) - len(png)
            finally:
                content_credentials._SIGNING_SETTINGS = kiln_settings
        logger.info(
            "| %d² | C2PA manifest: claim thumbnail / none | %.1f ms | %.1f ms | %.2fx "
            "| %d KiB / %d KiB |",
            size, timed["thumbnail"] * 1000, timed["kiln"] * 1000,
            timed["thumbnail"] / timed["kiln"], added["thumbnail"] >> 10, added["kiln"] >> 10,
        )  # fmt: skip

        def drawn(p: np.ndarray = pixels) -> object:
            watermark._overlay.kept.cache_clear()  # as before layers were kept
            return apply_visible_watermark(p)

        redrawn = median_s(drawn, repeats)
        kept = median_s(lambda p=pixels: apply_visible_watermark(p), repeats)
        logger.info(
            "| %d² | visible mark: layer drawn / kept | %.1f ms | %.1f ms | %.2fx | - |",
            size, redrawn * 1000, kept * 1000, redrawn / kept,
        )  # fmt: skip


def compare_order_delivery(sizes: list[int], repeats: int, images: int = 4) -> None:
    """An order's images one after another against side by side (``prepare_images``),
    on a real SQLite ledger and blob store in a temp dir: median time and ratio."""
    logger.info("")
    logger.info(
        "| size | images | one after another | side by side (%d threads) | ratio |",
        DELIVERY_THREADS,
    )
    logger.info("|---|---|---|---|---|")
    for quiet in ("alembic", "serving.core.ledger"):  # the temp ledger's migrations
        logging.getLogger(quiet).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, Ledger(f"sqlite:///{tmp}/ledger.db") as ledger:
        assets = Assets(ledger.engine, BlobStore(Path(tmp) / "assets"), None)
        tenant = ledger.create_tenant("bench").id
        for size in sizes:
            made = [
                Made(textured(size, seed), ImageRecord("base", "bench", "p", seed, size, size))
                for seed in range(images)
            ]
            alone = median_s(
                lambda m=made: [assets.prepare(tenant, i.record, i.pixels) for i in m], repeats
            )
            together = median_s(lambda m=made: prepare_images(assets, tenant, m), repeats)
            logger.info(
                "| %d² | %d | %.1f ms | %.1f ms | %.2fx |",
                size, images, alone * 1000, together * 1000, alone / together,
            )  # fmt: skip


def throwaway_signer() -> C2paSigner:
    chain = make_throwaway_chain()
    return C2paSigner(chain.chain_pem, chain.key_pem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="256 px, once")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats = [256], 1
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    signer = throwaway_signer()
    payload = provenance_payload("bench request")
    with tempfile.TemporaryDirectory() as tmp:
        store = BlobStore(Path(tmp))
        logger.info("| size | variant | median | vs plain PNG |")
        logger.info("|---|---|---|---|")
        for size in args.sizes:
            pixels = textured(size)
            variants: dict[str, Callable[[], object]] = {
                # Pillow's, as the ingress encoded before assets (and its own writer) existed.
                "plain PNG (before assets)": lambda p=pixels: pillow_png(p, {}),
                "invisible mark alone (embed + read-back)": lambda p=pixels: (
                    embed_invisible_watermark(p, payload)
                ),
                "base asset: mark + PNG + store": lambda p=pixels: store.put(
                    finish_image(p, FinishOptions(payload, METADATA)).original, "image/png"
                ),
                "style asset: + visible preview": lambda p=pixels: finish_image(
                    p, FinishOptions(payload, METADATA, visible=True)
                ),
                "base asset + C2PA manifest": lambda p=pixels: finish_image(
                    p, FinishOptions(payload, METADATA, signer=signer)
                ),
            }
            baseline = None
            for label, fn in variants.items():
                seconds = median_s(fn, args.repeats)
                baseline = baseline or seconds
                ratio = seconds / baseline
                logger.info("| %d² | %s | %.1f ms | %.2fx |", size, label, seconds * 1000, ratio)
    compare_png_writers([128, *args.sizes], max(args.repeats, 3) if not args.smoke else 1)
    compare_deflaters([128, *args.sizes], max(args.repeats, 3) if not args.smoke else 1)
    compare_skipped_work(args.sizes, args.repeats, signer)
    compare_order_delivery(args.sizes, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
