"""Assets and licenses through the real app: generations on the tiny models store assets;
style-kind assets (styles arrive with issue 4) are created through the assets layer.

Every test runs on SQLite and on PostgreSQL (``db_url``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from secrets_for_tests import TEST_SECRET
from sqlalchemy import insert, select, update

from pipelines.content_credentials import GENERATION_ASSERTION, read_c2pa_manifest
from pipelines.provenance import read_png_metadata
from pipelines.watermark import decode_invisible_watermark, provenance_payload
from serving.core.assets import Assets, ImageRecord
from serving.core.assets.retention import RetentionSweeper
from serving.core.ledger import Ledger
from serving.core.ledger.schema import assets as assets_table
from serving.core.licenses import RIGHTS
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings, SettingsError
from serving.http.app import create_app

GEN = "/v1/generations"
BASE_256 = {"model": "tiny-sd15", "prompt": "a red kiln", "resolution": "256px", "seed": 7}
LICENSE_PRICE = 20  # weights/default_models.toml [prices] license


@pytest.fixture(scope="module")
def models(catalog) -> LocalModelClient:
    """One in-process engine set for the module's apps (loading is the slow part)."""
    return LocalModelClient(catalog, device="cpu")


@pytest.fixture
def ledger(db_url: str):
    with Ledger(db_url, pool_size=20) as opened:
        yield opened


@pytest.fixture
def app(tmp_path: Path, catalog, models, ledger):
    return create_app(Settings(home=tmp_path, secret=TEST_SECRET), catalog, models, ledger=ledger)


@pytest.fixture
def alice(app, make_client) -> TestClient:
    return make_client(app, credits=100, name="alice")


@pytest.fixture
def bob(app, make_client) -> TestClient:
    return make_client(app, credits=100, name="bob")


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def textured(size: int = 320, seed: int = 0) -> np.ndarray:
    """A smooth gradient with pixel noise: an image the invisible mark decodes from."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 210, size)
    base = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def style_asset(app, client: TestClient, size: int = 320) -> str:
    """A style-kind asset of ``client``'s tenant, created through the assets layer."""
    record = ImageRecord(
        kind="artist_style",
        model="tiny-sd15",
        style="ink-wash",
        prompt="a heron",
        seed=3,
        width=size,
        height=size,
        params={"steps": 4},
    )
    asset, _ = app.state.kiln.assets.create(client.tenant_id, record, textured(size))
    return asset.id


def balance(client: TestClient) -> int:
    return client.get("/v1/credits").json()["balance"]


# Base-kind generations


def test_a_generation_stores_free_marked_assets(alice: TestClient):
    r = alice.post(GEN, json={**BASE_256, "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["credits_charged"] == 4
    images = body["data"]
    assert [i["license"] for i in images] == ["free", "free"]
    assert not any(i["watermarked"] for i in images)

    first = images[0]
    delivered = base64.b64decode(first["b64_json"])
    asset = alice.get(f"/v1/assets/{first['asset_id']}").json()
    assert asset["kind"] == "base" and asset["model"] == "tiny-sd15"
    assert asset["seed"] == 7 and asset["prompt"] == "a red kiln"
    assert asset["generation_id"] == body["id"]
    assert asset["license"] == {"state": "free", "license_id": None}
    assert asset["params"]["steps"] == 4 and asset["params"]["resolution"] == "256px"
    assert asset["sha256"] == hashlib.sha256(delivered).hexdigest()
    # The original is the delivered file, free to download; the preview is the same file.
    original = alice.get(asset["original_url"])
    assert original.status_code == 200 and original.content == delivered
    assert original.headers["content-type"] == "image/png"
    assert alice.get(asset["preview_url"]).content == delivered

    metadata = read_png_metadata(delivered)
    assert metadata["kiln:model"] == "tiny-sd15"
    assert metadata["kiln:seed"] == "7"
    assert metadata["kiln:asset_id"] == first["asset_id"]
    # The invisible mark is there and is what the asset row says.
    payload = decode_invisible_watermark(png_pixels(delivered))
    assert payload is not None and payload.hex() == asset["invisible_watermark"]


def test_the_same_request_gives_the_same_pixels_in_new_assets(alice: TestClient):
    a, b = (alice.post(GEN, json=BASE_256).json()["data"][0] for _ in range(2))
    assert a["asset_id"] != b["asset_id"]
    pixels_a = png_pixels(base64.b64decode(a["b64_json"]))
    assert np.array_equal(pixels_a, png_pixels(base64.b64decode(b["b64_json"])))


def test_small_images_carry_no_invisible_mark(alice: TestClient):
    body = {**BASE_256, "resolution": "128px"}
    image = alice.post(GEN, json=body).json()["data"][0]
    assert alice.get(f"/v1/assets/{image['asset_id']}").json()["invisible_watermark"] is None


def test_openai_route_returns_asset_ids(alice: TestClient):
    body = {"model": "tiny-sd15", "prompt": "a kiln", "size": "128x128", "output_format": "jpeg"}
    r = alice.post("/v1/images/generations", json=body)
    assert r.status_code == 200, r.text
    asset_id = r.json()["data"][0]["asset_id"]
    asset = alice.get(f"/v1/assets/{asset_id}").json()
    assert asset["media_type"] == "image/png"  # the asset keeps the lossless original
    assert Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"]))).format == (
        "JPEG"
    )


def test_a_license_is_not_sold_for_a_free_image(alice: TestClient):
    asset_id = alice.post(GEN, json=BASE_256).json()["data"][0]["asset_id"]
    before = balance(alice)
    r = alice.post(f"/v1/assets/{asset_id}/license")
    assert r.status_code == 400 and r.json()["error"]["code"] == "license_not_required"
    assert balance(alice) == before
    assert alice.get("/v1/licenses").json()["data"] == []


# Style-kind assets and licenses


def test_style_preview_is_marked_and_original_needs_a_license(app, alice: TestClient):
    asset_id = style_asset(app, alice)
    asset = alice.get(f"/v1/assets/{asset_id}").json()
    assert asset["kind"] == "artist_style" and asset["visible_watermark"] is True
    assert asset["license"] == {"state": "required", "license_id": None}

    preview = alice.get(asset["preview_url"])
    assert preview.status_code == 200
    refused = alice.get(asset["original_url"])
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "license_required"
    assert refused.json()["error"]["type"] == "permission_error"

    before = balance(alice)
    bought = alice.post(f"/v1/assets/{asset_id}/license")
    assert bought.status_code == 200, bought.text
    certificate = bought.json()
    assert certificate["credits_charged"] == LICENSE_PRICE == certificate["price"]
    assert balance(alice) == before - LICENSE_PRICE
    assert certificate["asset_id"] == asset_id
    assert certificate["tenant_id"] == alice.tenant_id and certificate["tenant_name"] == "alice"
    assert certificate["rights"] == list(RIGHTS)
    assert certificate["scope"] == "perpetual, worldwide, per image"
    assert datetime.fromisoformat(certificate["issued"]).date() == datetime.now(UTC).date()

    original = alice.get(asset["original_url"])
    assert original.status_code == 200
    assert hashlib.sha256(original.content).hexdigest() == certificate["asset_sha256"]
    assert certificate["asset_sha256"] == asset["sha256"]
    # The preview differs from the original in the visible mark only: same size, and
    # the difference is spread over the whole image, not a corner.
    marked, clean = png_pixels(preview.content), png_pixels(original.content)
    assert marked.shape == clean.shape
    changed = np.any(marked != clean, axis=-1)
    assert 0.05 < changed.mean() < 0.9
    for quarter in (changed[:160, :160], changed[160:, 160:], changed[:160, 160:]):
        assert quarter.any()
    # The original decodes the invisible mark its request derives.
    record_key = app.state.kiln.assets.get(alice.tenant_id, asset_id)
    assert decode_invisible_watermark(clean).hex() == record_key.invisible_watermark
    assert alice.get(f"/v1/assets/{asset_id}").json()["license"] == {
        "state": "licensed",
        "license_id": certificate["id"],
    }


def test_a_second_purchase_charges_nothing(app, alice: TestClient):
    asset_id = style_asset(app, alice)
    first = alice.post(f"/v1/assets/{asset_id}/license").json()
    before = balance(alice)
    again = alice.post(f"/v1/assets/{asset_id}/license").json()
    assert again["credits_charged"] == 0 and again["id"] == first["id"]
    assert balance(alice) == before
    listed = alice.get("/v1/licenses").json()
    assert [x["id"] for x in listed["data"]] == [first["id"]]
    assert alice.get(f"/v1/licenses/{first['id']}").json()["asset_sha256"] == first["asset_sha256"]


def test_concurrent_purchases_of_one_asset_charge_once(app, alice: TestClient):
    asset_id = style_asset(app, alice)
    licenses = app.state.kiln.licenses
    results = []
    start = threading.Barrier(8)

    def buy() -> None:
        start.wait()
        results.append(licenses.purchase(alice.tenant_id, asset_id, LICENSE_PRICE))

    threads = [threading.Thread(target=buy) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(charged for _, charged in results) == [0] * 7 + [LICENSE_PRICE]
    assert len({lic.id for lic, _ in results}) == 1
    assert balance(alice) == 100 - LICENSE_PRICE
    entries = alice.get("/v1/credits").json()["entries"]
    assert [e["kind"] for e in entries].count("license_purchase") == 1


def test_a_license_without_credits_is_402_and_stores_nothing(app, make_client):
    poor = make_client(app, credits=5, name="poor")
    asset_id = style_asset(app, poor)
    r = poor.post(f"/v1/assets/{asset_id}/license")
    assert r.status_code == 402 and r.headers["x-should-retry"] == "false"
    assert balance(poor) == 5
    assert poor.get("/v1/licenses").json()["data"] == []
    assert poor.get(f"/v1/assets/{asset_id}/original").status_code == 403


# Isolation


def test_another_tenant_gets_404_for_everything(app, alice: TestClient, bob: TestClient):
    asset_id = style_asset(app, alice)
    license_id = alice.post(f"/v1/assets/{asset_id}/license").json()["id"]
    base_id = alice.post(GEN, json={**BASE_256, "resolution": "128px"}).json()["data"][0][
        "asset_id"
    ]
    for target in (asset_id, base_id):
        for method, path in [
            ("GET", f"/v1/assets/{target}"),
            ("GET", f"/v1/assets/{target}/preview"),
            ("GET", f"/v1/assets/{target}/original"),
            ("POST", f"/v1/assets/{target}/license"),
            ("DELETE", f"/v1/assets/{target}"),
        ]:
            r = bob.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["code"] == "asset_not_found"
    assert bob.get(f"/v1/licenses/{license_id}").status_code == 404
    assert bob.get("/v1/assets").json()["data"] == []
    assert bob.get("/v1/licenses").json()["data"] == []
    # A cursor from another tenant is refused like an unknown one.
    assert bob.get("/v1/assets", params={"after": asset_id}).status_code == 400
    assert bob.get("/v1/licenses", params={"after": license_id}).status_code == 400
    # Bob's failed attempts changed nothing of Alice's, nor charged Bob.
    assert balance(bob) == 100
    assert alice.get(f"/v1/assets/{asset_id}/original").status_code == 200
    assert alice.get(f"/v1/assets/{base_id}").status_code == 200


def test_unknown_ids_are_404(alice: TestClient):
    for path in ["/v1/assets/ast_nope", "/v1/assets/../etc/original", "/v1/licenses/lic_x"]:
        assert alice.get(path).status_code == 404, path
    assert alice.delete("/v1/assets/ast_nope").status_code == 404


# Listing and deletion


def test_listing_pages_newest_first(app, alice: TestClient):
    made = [style_asset(app, alice, size=64) for _ in range(5)]
    first = alice.get("/v1/assets", params={"limit": 2}).json()
    assert first["has_more"] is True
    assert [a["id"] for a in first["data"]] == made[::-1][:2]
    second = alice.get("/v1/assets", params={"limit": 2, "after": first["data"][-1]["id"]})
    third = alice.get("/v1/assets", params={"limit": 2, "after": second.json()["data"][-1]["id"]})
    assert [a["id"] for a in second.json()["data"]] == made[::-1][2:4]
    assert [a["id"] for a in third.json()["data"]] == made[:1]
    assert third.json()["has_more"] is False
    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "x"}):
        assert alice.get("/v1/assets", params=bad).status_code == 400


def test_listing_filters_by_kind_model_and_license(app, alice: TestClient, bob: TestClient):
    base = alice.post(GEN, json={**BASE_256, "resolution": "128px", "n": 2}).json()
    base_ids = [image["asset_id"] for image in base["data"]]
    styled = [style_asset(app, alice, size=64) for _ in range(3)]
    bought = alice.post(f"/v1/assets/{styled[0]}/license")
    assert bought.status_code == 200, bought.text
    style_asset(app, bob, size=64)  # another tenant's never shows

    def ids(**params) -> list[str]:
        r = alice.get("/v1/assets", params=params)
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()["data"]]

    assert ids(kind="base") == base_ids[::-1]
    assert ids(kind="artist_style") == styled[::-1]
    assert ids(kind="agentic") == []
    assert ids(model="tiny-sd15") == [*styled[::-1], *base_ids[::-1]]
    assert ids(model="tiny-sdxl") == []
    assert ids(license="free") == base_ids[::-1]
    assert ids(license="required") == styled[:0:-1]
    assert ids(license="licensed") == [styled[0]]
    assert ids(kind="artist_style", license="required", model="tiny-sd15") == styled[:0:-1]
    assert ids(kind="base", license="licensed") == []
    # Paging walks the narrowed list; a cursor from the whole list works too.
    first = alice.get("/v1/assets", params={"kind": "artist_style", "limit": 2}).json()
    assert first["has_more"] is True
    rest = ids(kind="artist_style", limit=2, after=first["data"][-1]["id"])
    assert rest == [styled[0]]
    assert ids(kind="base", after=styled[0]) == base_ids[::-1]
    for bad in ({"kind": "style"}, {"license": "paid"}):
        r = alice.get("/v1/assets", params=bad)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == next(iter(bad)), r.text


def test_deleting_an_asset_removes_it_and_its_files(app, alice: TestClient):
    asset_id = style_asset(app, alice)
    license_id = alice.post(f"/v1/assets/{asset_id}/license").json()["id"]
    asset = app.state.kiln.assets.get(alice.tenant_id, asset_id)
    store = app.state.kiln.assets.store
    files = [
        store.path(asset.sha256, asset.media_type),
        store.path(asset.preview_sha256, "image/png"),
    ]
    assert all(f.is_file() for f in files)
    entries_before = alice.get("/v1/credits").json()["entries"]

    r = alice.delete(f"/v1/assets/{asset_id}")
    assert r.status_code == 200 and r.json() == {
        "object": "asset.deleted",
        "id": asset_id,
        "deleted": True,
    }
    assert not any(f.exists() for f in files)
    assert asset_id not in [a["id"] for a in alice.get("/v1/assets").json()["data"]]
    for path in ["", "/preview", "/original"]:
        assert alice.get(f"/v1/assets/{asset_id}{path}").status_code == 404
    assert alice.delete(f"/v1/assets/{asset_id}").status_code == 404
    # The ledger keeps its entries; the license keeps its certificate.
    assert alice.get("/v1/credits").json()["entries"] == entries_before
    assert alice.get(f"/v1/licenses/{license_id}").json()["asset_id"] == asset_id


def test_a_file_shared_by_two_assets_stays_until_the_last_goes(app, alice: TestClient):
    assets: Assets = app.state.kiln.assets
    asset_id = style_asset(app, alice, size=64)
    asset = assets.get(alice.tenant_id, asset_id)
    # A second row naming the same files (as a later import of identical bytes would).
    with assets.engine.begin() as conn:
        row = conn.execute(select(assets_table).where(assets_table.c.id == asset_id)).one()
        conn.execute(insert(assets_table).values({**row._mapping, "id": "ast_twin"}))
    original = assets.store.path(asset.sha256, asset.media_type)
    assets.delete(alice.tenant_id, asset_id)
    assert original.is_file()
    assert alice.get("/v1/assets/ast_twin/preview").status_code == 200
    assets.delete(alice.tenant_id, "ast_twin")
    assert not original.exists()


# Retention and restarts


def test_retention_deletes_old_unlicensed_assets_only(app, alice: TestClient):
    assets: Assets = app.state.kiln.assets
    kept = style_asset(app, alice, size=64)
    alice.post(f"/v1/assets/{kept}/license")
    dropped = style_asset(app, alice, size=64)
    base = alice.post(GEN, json={**BASE_256, "resolution": "128px"}).json()["data"][0]["asset_id"]
    assert assets.purge_expired(30) == 0  # nothing is 30 days old yet
    later = datetime.now(UTC) + timedelta(days=31)
    assert assets.purge_expired(30, now=later) == 2
    ids = [a["id"] for a in alice.get("/v1/assets").json()["data"]]
    assert ids == [kept]
    assert alice.get(f"/v1/assets/{dropped}").status_code == 404
    assert alice.get(f"/v1/assets/{base}").status_code == 404
    assert alice.get(f"/v1/assets/{kept}/original").status_code == 200


def test_retention_sweeper_runs_once_per_interval(app, alice: TestClient):
    assets: Assets = app.state.kiln.assets
    assert RetentionSweeper(assets, None).maybe_start() is None  # no setting: never
    old = style_asset(app, alice, size=64)
    with assets.engine.begin() as conn:
        conn.execute(
            update(assets_table)
            .where(assets_table.c.id == old)
            .values(created=datetime.now(UTC) - timedelta(days=2))
        )
    sweeper = RetentionSweeper(assets, 1, every_s=3600)
    thread = sweeper.maybe_start()
    assert thread is not None
    thread.join(10)
    assert alice.get(f"/v1/assets/{old}").status_code == 404  # the sweep deleted it
    assert sweeper.maybe_start() is None  # not due again for an hour
    assert Settings.from_env({"KILN_ASSET_RETENTION_DAYS": "7"}).asset_retention_days == 7
    with pytest.raises(SettingsError):
        Settings.from_env({"KILN_ASSET_RETENTION_DAYS": "0"})


def test_assets_and_licenses_survive_a_restart(tmp_path: Path, catalog, models, db_url: str):
    settings = Settings(home=tmp_path, secret=TEST_SECRET, database=db_url)
    first = create_app(settings, catalog, models)
    state = first.state.kiln
    tenant = state.accounts.create_tenant("studio")
    state.ledger.grant(tenant.id, 100)
    key = state.accounts.create_key(tenant.id).key
    headers = {"authorization": f"Bearer {key}"}
    with TestClient(first, headers=headers) as client:
        client.tenant_id = tenant.id
        base = client.post(GEN, json={**BASE_256, "resolution": "128px"}).json()["data"][0]
        styled = style_asset(first, client, size=64)
        license_id = client.post(f"/v1/assets/{styled}/license").json()["id"]
        before = client.get("/v1/credits").json()
    state.ledger.close()

    second = create_app(settings, catalog, models)  # a new process would build the same
    with TestClient(second, headers=headers) as client:
        listed = [a["id"] for a in client.get("/v1/assets").json()["data"]]
        assert listed == [styled, base["asset_id"]]
        original = client.get(f"/v1/assets/{base['asset_id']}/original")
        assert original.content == base64.b64decode(base["b64_json"])
        assert client.get(f"/v1/assets/{styled}/original").status_code == 200
        assert client.get(f"/v1/licenses/{license_id}").status_code == 200
        assert client.get("/v1/credits").json() == before
    second.state.kiln.ledger.close()


# Content credentials


def test_originals_carry_a_c2pa_manifest_when_a_certificate_is_set(
    tmp_path: Path, catalog, models, ledger, make_client, c2pa_credentials
):
    cert, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.write_bytes(c2pa_credentials.chain_pem)
    key.write_bytes(c2pa_credentials.key_pem)
    settings = Settings(home=tmp_path, secret=TEST_SECRET, c2pa_cert=cert, c2pa_key=key)
    client = make_client(create_app(settings, catalog, models, ledger=ledger))
    image = client.post(GEN, json={**BASE_256, "resolution": "128px"}).json()["data"][0]
    data = client.get(f"/v1/assets/{image['asset_id']}/original").content
    manifest = read_c2pa_manifest(data, trust_anchors_pem=c2pa_credentials.ca_pem)
    assert manifest is not None and manifest.validation_state == "Trusted"
    assert manifest.title == image["asset_id"]
    generation = manifest.assertions[GENERATION_ASSERTION]
    assert generation["kiln:model"] == "tiny-sd15" and generation["kiln:seed"] == "7"
    assert read_png_metadata(data)["kiln:asset_id"] == image["asset_id"]


def test_c2pa_settings_must_come_as_a_usable_pair(tmp_path: Path, c2pa_credentials):
    cert = tmp_path / "chain.pem"
    cert.write_bytes(c2pa_credentials.chain_pem)
    assert Settings(home=tmp_path).c2pa_signer() is None
    with pytest.raises(SettingsError, match="together"):
        Settings(home=tmp_path, c2pa_cert=cert).c2pa_signer()
    with pytest.raises(SettingsError, match="C2PA"):
        Settings(home=tmp_path, c2pa_cert=cert, c2pa_key=tmp_path / "missing.pem").c2pa_signer()
    leaf_only = tmp_path / "leaf.pem"
    leaf_only.write_bytes(c2pa_credentials.leaf_pem)
    key = tmp_path / "key.pem"
    key.write_bytes(c2pa_credentials.key_pem)
    with pytest.raises(SettingsError, match="chain"):
        Settings(home=tmp_path, c2pa_cert=leaf_only, c2pa_key=key).c2pa_signer()


def test_the_invisible_payload_is_derived_from_the_request():
    record = ImageRecord(kind="base", model="m", prompt="p", seed=1, width=256, height=256)
    same = ImageRecord(kind="base", model="m", prompt="p", seed=1, width=256, height=256)
    other = ImageRecord(kind="base", model="m", prompt="p", seed=2, width=256, height=256)
    assert provenance_payload(record.provenance_key()) == provenance_payload(same.provenance_key())
    assert provenance_payload(record.provenance_key()) != provenance_payload(other.provenance_key())


def test_asset_rows_are_written_with_their_settlement_or_not_at_all(app, ledger: Ledger):
    """The paid path's step 6 (serving/core/paid_images.py): an image's files are stored
    first, then its row is written in the transaction that settles its price; a settlement
    that fails leaves no row behind (the image was never delivered)."""
    from serving.core.assets import UnknownAsset
    from serving.core.ledger import LedgerError

    core = app.state.kiln
    tenant = ledger.create_tenant("settles")
    ledger.grant(tenant.id, 10)
    record = ImageRecord(kind="base", model="tiny-sd15", prompt="p", seed=1, width=64, height=64)
    pixels = textured(64)

    paid = core.assets.prepare(tenant.id, record, pixels)
    reservation = ledger.reserve(tenant.id, 2)
    add_row = lambda conn: core.assets.insert(conn, [paid])  # noqa: E731
    assert ledger.settle(reservation, 2, 1, also=add_row) == (2, 0)
    assert core.assets.get(tenant.id, paid.row["id"]).sha256 == paid.row["sha256"]

    lost = core.assets.prepare(tenant.id, record, pixels)
    released = ledger.reserve(tenant.id, 2)
    ledger.release(released)  # e.g. a hang-up released it while the image was stored
    with pytest.raises(LedgerError, match="already released"):
        ledger.settle(released, 2, 1, also=lambda conn: core.assets.insert(conn, [lost]))
    with pytest.raises(UnknownAsset):
        core.assets.get(tenant.id, lost.row["id"])
    assert ledger.balance(tenant.id).available == 8
