"""Private style training on the live server: the job runs as a Ray task, its events
stream over SSE, and the style it registers serves generations for its owner alone."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
from live_accounts import create_tenant
from PIL import Image


def orange_png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array([245, 120, 20]) + rng.normal(0, 10, (64, 64, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_training_job_under_serve_registers_a_usable_private_style(server):
    owner = create_tenant(server.url, "trainer", 100)
    other = create_tenant(server.url, "bystander", 100)
    files = [("images", (f"o{i}.png", orange_png(i), "image/png")) for i in range(5)]
    data = {"name": "Orange", "model": "tiny-sd15", "steps": "4", "trigger_word": "kilnorange"}
    r = httpx.post(
        f"{server.url}/v1/styles/train", data=data, files=files, headers=owner.headers, timeout=60
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=other.headers).status_code == 404

    # The event stream ends when the job does; its last event says how.
    events = []
    with httpx.stream(
        "GET", f"{server.url}/v1/jobs/{job_id}/events", headers=owner.headers, timeout=600
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    job = httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=owner.headers).json()
    assert job["state"] == "succeeded", job
    assert events, "no progress events"
    style_id = job["result"]["style_id"]

    body = {"model": "tiny-sd15", "prompt": "a pot", "resolution": "128px", "style": style_id}
    made = httpx.post(f"{server.url}/v1/generations", json=body, headers=owner.headers, timeout=300)
    assert made.status_code == 200, made.text
    assert made.json()["data"][0]["license"] == "required"  # a private-style image
    refused = httpx.post(
        f"{server.url}/v1/generations", json=body, headers=other.headers, timeout=60
    )
    assert refused.status_code == 404
