"""The official ``openai`` SDK streaming partial images from the live server (issue 22),
and a job's preview events:
``images.generate`` and ``images.edit`` with ``stream=True, partial_images=N`` iterate
OpenAI's events unchanged, each image's partials then its completed image, in image
order; the completed images are the non-streamed answer's pixels, charged the same; bad
input is a 400 in the error shape with nothing charged."""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import numpy as np
import pytest
from openai import BadRequestError, OpenAI
from PIL import Image

MODEL = "tiny-sd15"
STEPS = 6  # partial_images=2: a preview every 2 steps, those at steps 2 and 4 sent


def pixels(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB"))


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def client(server, tenant) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=tenant.key, max_retries=0, timeout=120)


def balance(http: httpx.Client) -> int:
    return http.get("/v1/credits").json()["balance"]


def test_sdk_streams_each_images_partials_then_the_image_in_order(client, http):
    before = balance(http)
    stream = client.images.generate(
        model=MODEL, prompt="a kiln at dusk", n=2, stream=True, partial_images=2,
        extra_body={"seed": 21, "steps": STEPS},
    )  # fmt: skip
    events = list(stream)
    kinds = [(e.type, getattr(e, "partial_image_index", None)) for e in events]
    partial, done = "image_generation.partial_image", "image_generation.completed"
    assert kinds == [(partial, 0), (partial, 1), (done, None)] * 2
    for event in events:
        assert pixels(event.b64_json).shape == (128, 128, 3) and event.output_format == "png"
    first, second = events[:3], events[3:]
    # Previews of the images (not copies of the final ones), and the images differ.
    assert not np.array_equal(pixels(first[0].b64_json), pixels(first[2].b64_json))
    assert not np.array_equal(pixels(first[2].b64_json), pixels(second[2].b64_json))
    # Streamed or not, the same images at the same price.
    plain = client.images.generate(
        model=MODEL, prompt="a kiln at dusk", n=2, extra_body={"seed": 21, "steps": STEPS}
    )
    for event, image in zip((first[2], second[2]), plain.data, strict=True):
        assert np.array_equal(pixels(event.b64_json), pixels(image.b64_json))
    assert balance(http) == before - 4


def test_sdk_streams_an_edit_and_none_with_zero_partials(client, http):
    photo = np.random.default_rng(5).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    events = list(
        client.images.edit(
            model=MODEL,
            image=("in.png", png(photo), "image/png"),
            prompt="a brass lantern",
            stream=True,
            partial_images=1,
            extra_body={"seed": 2, "steps": 8, "tool": "recreate"},
        )  # fmt: skip
    )
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert pixels(events[1].b64_json).shape == (128, 128, 3)
    only = list(client.images.generate(model=MODEL, prompt="a kiln", stream=True, partial_images=0))
    assert [e.type for e in only] == ["image_generation.completed"]


def too_many_partials(client: OpenAI) -> object:
    return client.images.generate(model=MODEL, prompt="a", stream=True, partial_images=4)


def streamed_urls(client: OpenAI) -> object:
    return client.images.generate(model=MODEL, prompt="a", stream=True, response_format="url")


def streamed_variation(client: OpenAI) -> object:
    image = ("v.png", png(np.zeros((64, 64, 3), np.uint8)), "image/png")
    return client.images.create_variation(model=MODEL, image=image, extra_body={"stream": "true"})


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (too_many_partials, "partial_images"),
        (streamed_urls, "response_format"),
        (streamed_variation, "stream"),
    ],
)
def test_bad_stream_input_is_a_400_naming_it_and_charges_nothing(client, http, call, param):
    before = balance(http)
    with pytest.raises(BadRequestError) as refused:
        call(client)
    assert refused.value.body["param"] == param
    assert balance(http) == before


def test_a_client_that_hangs_up_mid_stream_is_charged_nothing(server, tenant, http):
    """200 steps, hung up after the first partial: the call stops at its next step and
    the reservation is released (the balance comes back whole, no asset is kept)."""
    before, assets = balance(http), http.get("/v1/assets").json()["data"]
    body = {"model": MODEL, "prompt": "a long kiln", "stream": True, "partial_images": 3,
            "steps": 200, "seed": 1}  # fmt: skip
    with (
        httpx.Client(base_url=server.url, headers=tenant.headers, timeout=120) as fresh,
        fresh.stream("POST", "/v1/images/generations", json=body) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == (
            "event: image_generation.partial_image"
        )
    deadline = time.monotonic() + 30
    while balance(http) != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert balance(http) == before
    assert http.get("/v1/assets").json()["data"] == assets


def test_a_generation_job_carries_preview_events_beside_progress(http):
    """Native preview_every on an async generation: ``event: preview`` (WebP, step, image)
    at steps 2 and 4 for each of its 2 images, beside its progress events."""
    body = {"model": MODEL, "prompt": "a kiln", "n": 2, "steps": 4, "seed": 8, "preview_every": 2}
    submitted = http.post("/v1/generations", json=body, headers={"prefer": "respond-async"})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    deadline = time.monotonic() + 60
    while http.get(f"/v1/jobs/{job_id}").json()["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    events, kind = [], None
    for line in http.get(f"/v1/jobs/{job_id}/events").text.splitlines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((kind, json.loads(line.removeprefix("data: "))))
    previews = [data for kind, data in events if kind == "preview"]
    assert sorted((p["step"], p["image"]) for p in previews) == [(2, 0), (2, 1), (4, 0), (4, 1)]
    with Image.open(io.BytesIO(base64.b64decode(previews[0]["webp"]))) as image:
        assert image.format == "WEBP" and image.size == (128, 128)
    assert any(kind == "progress" for kind, _ in events)
    assert http.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded"
