"""An order's images are finished side by side (``prepare_images``), answered in order,
byte for byte what one after another gives, on a real ledger and a real blob store."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.watermark import decode_invisible_watermark
from serving.core.assets import Assets, ImageRecord
from serving.core.assets.delivery import DELIVERY_THREADS, Made, prepare_images
from serving.core.assets.store import BlobStore
from serving.core.ledger import Ledger


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Ledger(db_url) as opened:
        yield opened


class MeetingStore(BlobStore):
    """A real blob store whose writes wait until ``parties`` of them are under way at
    once: only images finished side by side get past it (one after another, the first
    write waits alone until the barrier gives up)."""

    def __init__(self, root: Path, parties: int) -> None:
        super().__init__(root)
        self.barrier = threading.Barrier(parties, timeout=20)

    def put(self, data: bytes, media_type: str) -> str:
        self.barrier.wait()
        return super().put(data, media_type)


def picture(seed: int, size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 210, size)
    base = np.stack([np.add.outer(ramp, ramp[::-1]) / 2] * 3, axis=-1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def record(seed: int) -> ImageRecord:
    return ImageRecord(
        kind="base", model="tiny-sd15", prompt="a kiln", seed=seed, width=256, height=256
    )


def pixels_of(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def test_an_orders_images_are_finished_side_by_side(ledger: Ledger, tmp_path: Path):
    assert DELIVERY_THREADS >= 2
    tenant = ledger.create_tenant("studio")
    store = MeetingStore(tmp_path / "assets", parties=2)
    assets = Assets(ledger.engine, store, None)
    made = [Made(picture(seed), record(seed)) for seed in range(2)]
    prepared = prepare_images(assets, tenant.id, made)  # sequential: BrokenBarrierError
    assert [p.asset.seed for p in prepared] == [0, 1]


def test_side_by_side_answers_in_order_what_one_after_another_gives(ledger: Ledger, tmp_path: Path):
    tenant = ledger.create_tenant("studio")
    assets = Assets(ledger.engine, BlobStore(tmp_path / "assets"), None)
    made = [Made(picture(seed), record(seed)) for seed in range(5)]
    together = prepare_images(assets, tenant.id, made)
    alone = [assets.prepare(tenant.id, m.record, m.pixels) for m in made]
    assert [p.asset.seed for p in together] == [0, 1, 2, 3, 4]
    for side, one in zip(together, alone, strict=True):
        # The files differ only by their asset id (a PNG text chunk): same pixels, mark.
        assert np.array_equal(pixels_of(side.finished.original), pixels_of(one.finished.original))
        assert side.finished.invisible_payload == one.finished.invisible_payload
        assert decode_invisible_watermark(pixels_of(side.finished.original)) == (
            side.finished.invisible_payload
        )
        assert assets.store.path(side.asset.sha256, "image/png").is_file()
    with ledger.engine.begin() as conn:
        assets.insert(conn, together)
    listed, _ = assets.list(tenant.id, limit=10)
    assert sorted(a.seed for a in listed) == [0, 1, 2, 3, 4]


class FailingStore(BlobStore):
    """A real blob store that cannot write the image of one seed (the disk refused it)."""

    def __init__(self, root: Path, refused: int) -> None:
        super().__init__(root)
        self.refused = b"kiln:seed\x00" + str(refused).encode()
        self.written: list[str] = []

    def put(self, data: bytes, media_type: str) -> str:
        if self.refused in data:
            raise OSError("No space left on device")
        digest = super().put(data, media_type)
        self.written.append(digest)
        return digest


def test_a_failing_image_is_raised_after_the_others_end(ledger: Ledger, tmp_path: Path):
    tenant = ledger.create_tenant("studio")
    store = FailingStore(tmp_path / "assets", refused=1)
    assets = Assets(ledger.engine, store, None)
    made = [Made(picture(seed), record(seed)) for seed in range(4)]
    with pytest.raises(OSError, match="No space left"):
        prepare_images(assets, tenant.id, made)
    assert len(store.written) == 3  # the others ended before the failure was raised


class SlowerFirstStore(BlobStore):
    """A real blob store on which an order's earlier images take longer to write, so
    side by side the later ones finish first."""

    def put(self, data: bytes, media_type: str) -> str:
        seed = int(data.split(b"kiln:seed\x00", 1)[1][:1])
        time.sleep(0.06 * (4 - seed))
        return super().put(data, media_type)


def test_an_orders_assets_list_in_its_order_whichever_finished_first(
    ledger: Ledger, tmp_path: Path
):
    tenant = ledger.create_tenant("studio")
    assets = Assets(ledger.engine, SlowerFirstStore(tmp_path / "assets"), None)
    made = [Made(picture(seed), record(seed)) for seed in range(4)]
    prepared = prepare_images(assets, tenant.id, made)
    created = [p.asset.created for p in prepared]
    assert created == sorted(created) and len(set(created)) == 4
    with ledger.engine.begin() as conn:
        assets.insert(conn, prepared)
    listed, _ = assets.list(tenant.id, limit=10)
    assert [a.seed for a in listed] == [3, 2, 1, 0]  # newest first: the order, reversed
