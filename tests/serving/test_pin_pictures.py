"""Pins keep their pictures (for models that take images: multi-reference models), in
the pin's own folder, content-addressed, deleted with it; their rights are checked again
at every use through ``asset_rights.admit``; a pin made before Kiln kept pictures is a
400 where they are needed, saying to make it again."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import delete, update
from test_asset_rights import stored_asset

from serving.core.errors import KilnError
from serving.core.ledger.schema import licenses, pins

PINS = "/v1/pins"


def upload(seed: int, width: int, height: int) -> tuple[str, np.ndarray]:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode(), pixels


def kept(client, pin_id: str) -> list[np.ndarray]:
    """The pictures as a multi-reference model's request would be given them."""
    core = client.app.state.kiln
    record = core.pins.get(client.tenant_id, pin_id)
    return asyncio.run(core.pinning.pictures(client.tenant_id, record))


def test_a_pin_keeps_its_pictures_as_given_and_deletes_them_with_it(alice):
    text, given = upload(1, 80, 48)  # not square: kept as given, not as embedded
    asset = stored_asset(alice, "base")
    r = alice.post(PINS, json={"kind": "product", "name": "Jug", "images": [text],
                               "asset_ids": [asset]})  # fmt: skip
    assert r.status_code == 201, r.text
    pin = r.json()
    assert pin["pictures_kept"] == 2

    pictures = kept(alice, pin["id"])
    assert [p.shape for p in pictures] == [(48, 80, 3), (64, 96, 3)]
    assert np.array_equal(pictures[0], given)  # PNG: the very pixels
    asset_png = alice.get(f"/v1/assets/{asset}/original").content
    with Image.open(io.BytesIO(asset_png)) as image:
        assert np.array_equal(pictures[1], np.asarray(image.convert("RGB")))

    core = alice.app.state.kiln
    folder = core.settings.home / "pins" / "pictures" / pin["id"]
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert len(files) == 2
    for path in files:  # content-addressed: each named by its SHA-256
        assert path.stem == hashlib.sha256(path.read_bytes()).hexdigest()

    assert alice.delete(f"{PINS}/{pin['id']}").status_code == 200
    assert not folder.exists()


def test_a_picture_from_an_asset_is_admitted_again_at_every_use(alice):
    licensed = stored_asset(alice, "artist_style", licensed=True)
    base = stored_asset(alice, "base")
    r = alice.post(PINS, json={"kind": "character", "name": "Mira",
                               "asset_ids": [base, licensed]})  # fmt: skip
    assert r.status_code == 201, r.text
    pin_id = r.json()["id"]
    assert len(kept(alice, pin_id)) == 2

    # The base asset deleted from the gallery: the copy the pin kept stands.
    assert alice.delete(f"/v1/assets/{base}").status_code == 200
    assert len(kept(alice, pin_id)) == 2
    # The style image's license gone (an operator voided it): refused at the next use.
    core = alice.app.state.kiln
    with core.ledger.engine.begin() as conn:
        conn.execute(delete(licenses).where(licenses.c.asset_id == licensed))
    with pytest.raises(KilnError) as refused:
        kept(alice, pin_id)
    assert (refused.value.status, refused.value.code) == (403, "license_required")
    assert refused.value.param == "pins"


def test_a_pin_made_before_pictures_were_kept_says_to_make_it_again(alice):
    text, _ = upload(2, 32, 32)
    pin_id = alice.post(PINS, json={"kind": "character", "name": "Old", "images": [text]}).json()[
        "id"
    ]
    core = alice.app.state.kiln
    with core.ledger.engine.begin() as conn:  # as migration 0012 leaves an older pin
        conn.execute(update(pins).where(pins.c.id == pin_id).values(pictures=None))
    assert alice.get(f"{PINS}/{pin_id}").json()["pictures_kept"] == 0
    with pytest.raises(KilnError) as refused:
        kept(alice, pin_id)
    error = refused.value
    assert (error.status, error.code, error.param) == (400, "pin_without_pictures", "pins")
    assert "create the pin again" in str(error)
