"""LoRA styles on the live server: imported over HTTP, routed as Serve's multiplexed model
id, batched without mixing, each request getting exactly what its style gives alone."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from live_accounts import ADMIN_KEY, bearer, create_tenant
from PIL import Image

BODY = {"model": "tiny-sd15", "prompt": "a harbour at dusk", "resolution": "128px", "steps": 2}


@pytest.fixture(scope="module")
def styles(server, tiny_sd15_loras) -> dict[str, str]:
    """Two artist styles imported over HTTP with the admin key: name -> id."""
    ids = {}
    for name, path in zip(("a", "b"), tiny_sd15_loras, strict=True):
        with path.open("rb") as f:
            r = httpx.post(
                f"{server.url}/v1/styles",
                files={"file": (path.name, f, "application/octet-stream")},
                data={"name": f"e2e {name}", "model": "tiny-sd15", "kind": "artist"},
                headers=bearer(ADMIN_KEY),
                timeout=120,
            )
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return ids


def image_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    data = base64.b64decode(response.json()["data"][0]["b64_json"])
    with Image.open(io.BytesIO(data)) as decoded:
        return np.asarray(decoded.convert("RGB")).astype(int)


def test_a_mixed_style_burst_gives_each_request_its_style_alone(server, styles):
    user = create_tenant(server.url, "styles", 1000)
    jobs = [
        {**BODY, "seed": seed, **({"style": styles[name]} if name else {})}
        for seed, name in [(1, "a"), (1, "b"), (1, None), (2, "a"), (2, "b"), (3, None)]
    ]

    def post(body: dict) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v1/generations", json=body, headers=user.headers, timeout=300
        )

    alone = [image_of(post(body)) for body in jobs]
    # A, B and none at one seed really differ (the previews differ beyond the mark).
    assert len({a.tobytes() for a in alone[:3]}) == 3
    with ThreadPoolExecutor(len(jobs) * 2) as pool:
        burst = list(pool.map(post, jobs * 2))
    for index, response in enumerate(burst):
        got = image_of(response)
        assert np.abs(got - alone[index % len(jobs)]).max() <= 2, jobs[index % len(jobs)]


def test_styles_are_listed_for_every_tenant_and_kind_follows(server, styles):
    user = create_tenant(server.url, "lister", 10)
    listed = httpx.get(f"{server.url}/v1/styles", headers=user.headers).json()["data"]
    assert set(styles.values()) <= {s["id"] for s in listed}
    r = httpx.post(
        f"{server.url}/v1/generations",
        json={**BODY, "seed": 4, "style": styles["a"]},
        headers=user.headers,
        timeout=300,
    )
    assert r.status_code == 200, r.text
    image = r.json()["data"][0]
    assert image["watermarked"] is True and image["license"] == "required"
    asset = httpx.get(f"{server.url}/v1/assets/{image['asset_id']}", headers=user.headers)
    assert asset.json()["kind"] == "artist_style"
