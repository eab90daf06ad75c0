"""Exports through the real app: upscale, background removal and downloads, license-gated
(base free; style 403 before and 200 after a license), each bad input refused in the
error shape with nothing charged or stored, another tenant's asset 404, big upscales as
a job with progress. SQLite (the ledger rules themselves are tested on both databases
in tests/serving/test_assets.py)."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from secrets_for_tests import TEST_SECRET

from serving.core.assets import ImageRecord
from serving.core.errors import KilnError
from serving.core.exports import service, trace_slots
from serving.core.exports.trace_slots import TRACES
from serving.core.ledger import Ledger
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app

UPSCALE, REMOVE_BG, VECTORIZE, LICENSE = 4, 2, 3, 20  # default_models.toml [prices]


@pytest.fixture
def app(tmp_path: Path, catalog):
    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}") as ledger:
        models = LocalModelClient(catalog, device="cpu")  # never asked: no generation here
        application = create_app(Settings(home=tmp_path, secret=TEST_SECRET), catalog, models,
                                 ledger=ledger)  # fmt: skip
        yield application
        application.state.kiln.job_runner.close()


@pytest.fixture
def alice(app, make_client) -> TestClient:
    return make_client(app, credits=100, name="alice")


@pytest.fixture
def bob(app, make_client) -> TestClient:
    return make_client(app, credits=100, name="bob")


def picture(width: int = 96, height: int = 64) -> np.ndarray:
    """Three flat shapes on white: something to upscale, cut out and trace."""
    image = np.full((height, width, 3), 255, np.uint8)
    image[8:30, 8:40] = (220, 30, 30)
    image[36:60, 12:44] = (30, 160, 40)
    image[10:56, 56:90] = (30, 60, 200)
    return image


def make_asset(app, client: TestClient, kind: str = "base", size=(96, 64)) -> str:
    record = ImageRecord(
        kind=kind, model="tiny-sd15", style="ink-wash" if "style" in kind else None,
        prompt="three shapes", seed=5, width=size[0], height=size[1],
    )  # fmt: skip
    asset, _ = app.state.kiln.assets.create(client.tenant_id, record, picture(*size))
    return asset.id


def balance(client: TestClient) -> int:
    return client.get("/v1/credits").json()["balance"]


def asset_count(client: TestClient) -> int:
    return len(client.get("/v1/assets", params={"limit": 100}).json()["data"])


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# Base images: free to export


def test_a_base_image_upscales_into_a_child_asset(alice: TestClient):
    parent = make_asset(alice.app, alice)
    response = alice.post(f"/v1/assets/{parent}/upscale", json={"long_side": 384})
    assert response.status_code == 200, response.text
    body = response.json()
    child = body["asset"]
    assert body["operation"] == "upscale" and body["credits_charged"] == UPSCALE
    assert child["parent_id"] == parent and child["kind"] == "base"
    assert (child["width"], child["height"]) == (384, 256)
    assert child["params"]["method"] == "model" and child["params"]["upscaler"] == "tiny-esrgan"
    assert balance(alice) == 100 - UPSCALE
    original = decoded(alice.get(f"/v1/assets/{child['id']}/original").content)
    assert original.size == (384, 256)


def test_scale_and_the_explicit_lanczos_method(alice: TestClient):
    parent = make_asset(alice.app, alice)
    body = alice.post(
        f"/v1/assets/{parent}/upscale", json={"scale": 2.5, "method": "lanczos"}
    ).json()
    assert (body["asset"]["width"], body["asset"]["height"]) == (240, 160)
    assert body["asset"]["params"]["method"] == "lanczos"


def test_background_removal_stores_an_rgba_child(alice: TestClient):
    parent = make_asset(alice.app, alice)
    response = alice.post(f"/v1/assets/{parent}/remove-background")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["credits_charged"] == REMOVE_BG and body["asset"]["parent_id"] == parent
    cut = decoded(alice.get(f"/v1/assets/{body['asset']['id']}/original").content)
    assert cut.mode == "RGBA" and cut.size == (96, 64)
    alpha = np.asarray(cut)[..., 3]
    assert alpha.min() == 0 or alpha.max() == 255  # a real mask, not a blank channel


def test_a_cut_out_keeps_its_alpha_through_upscale_and_download(alice: TestClient):
    parent = make_asset(alice.app, alice)
    cut = alice.post(f"/v1/assets/{parent}/remove-background").json()["asset"]["id"]
    big = alice.post(f"/v1/assets/{cut}/upscale", json={"long_side": 192}).json()["asset"]
    assert big["parent_id"] == cut
    upscaled = decoded(alice.get(f"/v1/assets/{big['id']}/original").content)
    source = np.asarray(decoded(alice.get(f"/v1/assets/{cut}/original").content))[..., 3]
    assert upscaled.mode == "RGBA" and upscaled.size == (192, 128)
    alpha = np.asarray(upscaled)[..., 3]
    assert abs(float(alpha.mean()) - float(source.mean())) < 8  # the same mask, enlarged
    jpeg = decoded(alice.get(f"/v1/assets/{cut}/download", params={"format": "jpeg"}).content)
    assert jpeg.mode == "RGB"  # flattened on white: JPEG has no alpha
    webp = decoded(alice.get(f"/v1/assets/{cut}/download", params={"format": "webp"}).content)
    assert webp.mode == "RGBA"


def test_downloads_in_every_format(alice: TestClient):
    parent = make_asset(alice.app, alice)
    url = f"/v1/assets/{parent}/download"
    png = alice.get(url)
    assert png.headers["content-type"] == "image/png" and png.headers["x-credits-charged"] == "0"
    assert png.content == alice.get(f"/v1/assets/{parent}/original").content
    small = alice.get(url, params={"format": "jpeg", "long_side": 48})
    assert small.headers["content-type"] == "image/jpeg"
    assert decoded(small.content).size == (48, 32)
    webp = alice.get(url, params={"format": "webp"})
    assert decoded(webp.content).format == "WEBP"
    assert balance(alice) == 100  # converting and shrinking are free
    big = alice.get(url, params={"format": "png", "long_side": 300})
    assert decoded(big.content).size == (300, 200)
    assert big.headers["x-credits-charged"] == str(UPSCALE)
    svg = alice.get(url, params={"format": "svg", "mode": "polygon", "long_side": 192})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)
    assert root.get("width") == "192" and root.get("viewBox") == "0 0 96 64"
    fills = {p.get("fill") for p in root.iter("{http://www.w3.org/2000/svg}path")}
    assert {"#DC1E1E", "#1EA028", "#1E3CC8"} <= fills
    assert balance(alice) == 100 - UPSCALE - VECTORIZE
    assert asset_count(alice) == 1  # downloads are renditions, never stored


# SVG: traced at a working resolution, a few at a time per process


def test_a_big_svg_is_traced_small_and_drawn_at_long_side(alice: TestClient):
    parent = make_asset(alice.app, alice, size=(2400, 1600))
    svg = alice.get(f"/v1/assets/{parent}/download", params={"format": "svg", "long_side": 7680})
    assert svg.status_code == 200, svg.text
    root = ET.fromstring(svg.content)
    # Drawn at 7680 x 5120; traced at 1200 x 800 (2400 px halved to fit 2048 px).
    assert (root.get("width"), root.get("height")) == ("7680", "5120")
    assert root.get("viewBox") == "0 0 1200 800"
    own = ET.fromstring(
        alice.get(f"/v1/assets/{parent}/download", params={"format": "svg"}).content
    )
    assert (own.get("width"), own.get("height"), own.get("viewBox")) == (
        "2400",
        "1600",
        "0 0 1200 800",
    )


def test_svg_traces_past_the_process_limit_are_429_and_charge_nothing(alice: TestClient):
    parent = make_asset(alice.app, alice)
    url = f"/v1/assets/{parent}/download"
    limit = alice.app.state.kiln.settings.svg_max_concurrent
    held = [TRACES.take(limit) for _ in range(limit)]  # every slot busy with another trace
    try:
        refused = alice.get(url, params={"format": "svg"})
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == str(trace_slots.RETRY_AFTER_S)
        error = refused.json()["error"]
        assert error["code"] == "svg_concurrency_limit" and error["type"] == "rate_limit_error"
        assert alice.get(url, params={"format": "webp"}).status_code == 200  # rasters: no cap
        assert balance(alice) == 100
    finally:
        for slot in held:
            slot.abandon()
    assert alice.get(url, params={"format": "svg"}).status_code == 200
    assert TRACES.running == 0  # the trace gave its slot back
    assert balance(alice) == 100 - VECTORIZE


def test_a_refused_svg_download_gives_its_slot_back(app, make_client):
    poor = make_client(app, credits=1, name="poor")
    parent = make_asset(app, poor)
    response = poor.get(f"/v1/assets/{parent}/download", params={"format": "svg"})
    assert response.status_code == 402
    assert TRACES.running == 0


# The resident high-water mark a fresh process adds while it traces the PNG at argv[1]
# (after a warm-up trace, so imports and first calls are not counted), in MiB.
PEAK_OF_ONE_TRACE = """
import ctypes, io, sys
from pathlib import Path
from PIL import Image
from serving.core.exports.service import render_svg

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(field + ":"))

buf = io.BytesIO()
Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, "PNG")
render_svg(buf.getvalue(), None)
data = Path(sys.argv[1]).read_bytes()
ctypes.CDLL("libc.so.6").malloc_trim(0)
Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS")
svg = render_svg(data, 7680)
print((status("VmHWM") - before) / 1024, len(svg))
"""


def shapes(side: int) -> np.ndarray:
    """Flat shapes drawn in proportion to ``side``: the same picture at every size."""
    image = np.full((side, side, 3), 255, np.uint8)
    q = side // 8
    image[q : 3 * q, q : 4 * q] = (220, 30, 30)
    image[4 * q : 7 * q, 2 * q : 5 * q] = (30, 160, 40)
    image[2 * q : 6 * q, 5 * q : 7 * q] = (30, 60, 200)
    return image


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_svg_memory_does_not_grow_with_the_assets_pixels(tmp_path: Path):
    peaks = {}
    for side in (2048, 4096):
        path = tmp_path / f"{side}.png"
        Image.fromarray(shapes(side)).save(path, compress_level=1)
        done = subprocess.run(
            [sys.executable, "-c", PEAK_OF_ONE_TRACE, str(path)], capture_output=True,
            text=True, check=True, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        peaks[side] = float(done.stdout.split()[0])
    # Both are traced at 2048 px. Decoding the 4096 px one whole would add 48 MiB (RGB)
    # before reducing it; a tuple per pixel, GiBs.
    assert peaks[4096] - peaks[2048] < 24, peaks


def test_a_slot_is_held_while_its_trace_runs_even_if_the_request_is_gone():
    slots = trace_slots.TraceSlots()
    started, finish = threading.Event(), threading.Event()
    slot = slots.take(1)
    worker = threading.Thread(target=slot.run, args=(lambda: started.set() or finish.wait(),))
    worker.start()
    started.wait(5)
    slot.abandon()  # the client hung up: the thread still traces
    with pytest.raises(KilnError) as full:
        slots.take(1)
    assert full.value.status == 429
    finish.set()
    worker.join(5)
    assert slots.running == 0
    never_ran = slots.take(1)
    never_ran.abandon()  # cancelled before its thread started (or refused with 402)
    with pytest.raises(RuntimeError):
        never_ran.run(lambda: None)
    assert slots.running == 0


# Style images: only with a license


def test_style_exports_need_a_license_then_work(alice: TestClient):
    parent = make_asset(alice.app, alice, kind="artist_style")
    routes = [
        ("post", f"/v1/assets/{parent}/upscale", {"json": {"long_side": 192}}),
        ("post", f"/v1/assets/{parent}/remove-background", {}),
        ("get", f"/v1/assets/{parent}/download", {"params": {"format": "svg"}}),
        ("get", f"/v1/assets/{parent}/download", {"params": {"long_side": 64}}),
    ]
    for method, url, kwargs in routes:
        refused = getattr(alice, method)(url, **kwargs)
        assert refused.status_code == 403, (url, refused.text)
        assert refused.json()["error"]["code"] == "license_required"
    assert balance(alice) == 100 and asset_count(alice) == 1
    assert alice.post(f"/v1/assets/{parent}/license").status_code == 200
    spent = LICENSE
    for method, url, kwargs in routes:
        allowed = getattr(alice, method)(url, **kwargs)
        assert allowed.status_code == 200, (url, allowed.text)
    spent += UPSCALE + REMOVE_BG + VECTORIZE
    assert balance(alice) == 100 - spent


def test_a_licensed_images_child_is_style_kind_and_licensed_too(alice: TestClient):
    parent = make_asset(alice.app, alice, kind="private_style")
    alice.post(f"/v1/assets/{parent}/license")
    child = alice.post(f"/v1/assets/{parent}/upscale", json={"long_side": 192}).json()["asset"]
    assert child["kind"] == "private_style" and child["visible_watermark"] is True
    assert child["license"]["state"] == "licensed"
    certificate = alice.get(f"/v1/licenses/{child['license']['license_id']}").json()
    assert certificate["price"] == 0
    assert alice.get(f"/v1/assets/{child['id']}/original").status_code == 200
    assert balance(alice) == 100 - LICENSE - UPSCALE  # the child's license cost nothing


# Bad input: the error shape, nothing charged, nothing stored

JSON_TYPE = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("method", "suffix", "kwargs", "param"),
    [
        ("post", "upscale", {"json": {"long_side": 7681}}, "long_side"),
        ("post", "upscale", {"json": {"long_side": 0}}, "long_side"),
        ("post", "upscale", {"json": {"scale": 100.0}}, "scale"),
        # JSON's 1e309 reads as infinity (and Python's JSON takes NaN): no size to round to.
        ("post", "upscale", {"content": b'{"scale": 1e309}', "headers": JSON_TYPE}, "scale"),
        ("post", "upscale", {"content": b'{"scale": NaN}', "headers": JSON_TYPE}, "scale"),
        ("post", "upscale", {"json": {}}, "long_side"),
        ("post", "upscale", {"json": {"long_side": 256, "scale": 2}}, "long_side"),
        ("post", "upscale", {"json": {"long_side": 256, "method": "bicubic"}}, "method"),
        ("get", "download", {"params": {"format": "gif"}}, "format"),
        ("get", "download", {"params": {"long_side": 7681}}, "long_side"),
        ("get", "download", {"params": {"long_side": 0}}, "long_side"),
        ("get", "download", {"params": {"long_side": 512, "method": "nearest"}}, "method"),
        ("get", "download", {"params": {"format": "svg", "mode": "bezier"}}, "mode"),
    ],
)
def test_bad_input_is_400_and_charges_nothing(alice: TestClient, method, suffix, kwargs, param):
    parent = make_asset(alice.app, alice)
    response = getattr(alice, method)(f"/v1/assets/{parent}/{suffix}", **kwargs)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert balance(alice) == 100 and asset_count(alice) == 1


def test_another_tenants_asset_is_404_everywhere(alice: TestClient, bob: TestClient):
    parent = make_asset(alice.app, alice)
    for response in (
        bob.post(f"/v1/assets/{parent}/upscale", json={"long_side": 192}),
        bob.post(f"/v1/assets/{parent}/remove-background"),
        bob.get(f"/v1/assets/{parent}/download"),
        bob.post("/v1/assets/ast_nothing/upscale", json={"long_side": 192}),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "asset_not_found"
    assert balance(bob) == 100 and asset_count(bob) == 0


def test_without_credits_it_is_402_and_nothing_is_stored(app, make_client):
    poor = make_client(app, credits=1, name="poor")
    parent = make_asset(app, poor)
    response = poor.post(f"/v1/assets/{parent}/upscale", json={"long_side": 192})
    assert response.status_code == 402
    assert balance(poor) == 1 and asset_count(poor) == 1


def test_without_an_upscaler_lanczos_must_be_asked_for(tmp_path: Path, catalog, make_client):
    from dataclasses import replace

    bare = replace(catalog, components={
        k: v for k, v in catalog.components.items() if v.kind != "upscaler"
    })  # fmt: skip
    with Ledger(f"sqlite:///{tmp_path / 'bare.db'}") as ledger:
        app = create_app(Settings(home=tmp_path, secret=TEST_SECRET), bare,
                         LocalModelClient(bare, device="cpu"), ledger=ledger)  # fmt: skip
        client = make_client(app, credits=100)
        parent = make_asset(app, client)
        refused = client.post(f"/v1/assets/{parent}/upscale", json={"long_side": 192})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "method"
        assert "lanczos" in refused.json()["error"]["message"]
        ok = client.post(f"/v1/assets/{parent}/upscale",
                         json={"long_side": 192, "method": "lanczos"})  # fmt: skip
        assert ok.status_code == 200 and balance(client) == 100 - UPSCALE


# Big upscales: a job with progress


def test_a_big_upscale_runs_as_a_job_with_progress(alice: TestClient, monkeypatch):
    monkeypatch.setattr(service, "SYNC_MAX_PIXELS", 100 * 100)  # 8K on a CPU takes long
    parent = make_asset(alice.app, alice)
    response = alice.post(f"/v1/assets/{parent}/upscale", json={"long_side": 768})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "upscale" and response.headers["location"] == f"/v1/jobs/{job['id']}"
    alice.app.state.kiln.job_runner.wait(timeout=120)
    done = alice.get(f"/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded", done
    child = alice.get(f"/v1/assets/{done['result']['asset_id']}").json()
    assert (child["width"], child["height"]) == (768, 512) and child["parent_id"] == parent
    events = alice.get(f"/v1/jobs/{job['id']}/events").text
    assert '"stage":"upscaling"' in events
    assert balance(alice) == 100 - UPSCALE
