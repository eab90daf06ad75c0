"""Asynchronous image requests, cancel and hang-up on the session's live server, through
Ray: the model replica's streaming method (``ModelDeployment.generate_stream``) carries
each step to the job, and cancelling the call (a ``DELETE``, a client gone) reaches the
replica, which stops at the next step. The OpenAI SDK submits with ``Prefer`` as an
extra header; the job's result is its synchronous answer, pixel for pixel.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import httpx
import numpy as np
import pytest
from live_accounts import create_tenant
from PIL import Image

CREDITS = 100
FAST = {"model": "tiny-sd15", "prompt": "a kiln at dawn", "seed": 31, "steps": 3}
# Far longer than the tests wait: 200 steps at 256 px (2 credits).
SLOW = {"model": "tiny-sd15", "prompt": "a slow kiln", "resolution": "256px", "steps": 200,
        "seed": 5}  # fmt: skip


@pytest.fixture
def client(server) -> httpx.Client:
    tenant = create_tenant(server.url, "async studio", CREDITS)
    with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=120) as c:
        c.key = tenant.key  # type: ignore[attr-defined]
        yield c


def held(client: httpx.Client) -> tuple[int, int]:
    body = client.get("/v1/credits").json()
    return body["balance"], body["held"]


def settled(client: httpx.Client) -> tuple[int, int]:
    deadline = time.monotonic() + 30
    while (answer := held(client))[1] and time.monotonic() < deadline:
        time.sleep(0.1)
    return answer


def wait_done(client: httpx.Client, job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def first_progress(client: httpx.Client, job_id: str) -> dict:
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "progress":
                return json.loads(line[6:])
    raise AssertionError("the job ended without a progress event")


def pixels(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB"))


def test_the_openai_sdk_submits_a_job_whose_result_is_its_sync_answer(server, client):
    from openai import OpenAI

    sdk = OpenAI(base_url=f"{server.url}/v1", api_key=client.key)  # type: ignore[attr-defined]
    extra = {"seed": 12, "steps": 3}
    sync = sdk.images.generate(model="tiny-sd15", prompt="a jug", size="128x128", extra_body=extra)
    raw = sdk.images.with_raw_response.generate(
        model="tiny-sd15", prompt="a jug", size="128x128", extra_body=extra,
        extra_headers={"Prefer": "respond-async"},
    )  # fmt: skip
    assert raw.status_code == 202
    job = raw.http_response.json()
    assert job["kind"] == "openai_image" and raw.headers["location"] == f"/v1/jobs/{job['id']}"
    done = wait_done(client, job["id"])
    assert done["state"] == "succeeded", done
    assert done["progress"]["step"] == done["progress"]["total"] == 3
    [image] = done["result"]["data"]
    np.testing.assert_array_equal(pixels(image["b64_json"]), pixels(sync.data[0].b64_json))
    assert settled(client) == (CREDITS - 2, 0)


def test_a_cancelled_job_stops_on_its_replica_and_charges_nothing(client):
    response = client.post("/v1/generations", json=SLOW, headers={"prefer": "respond-async"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    step = first_progress(client, job_id)
    assert step["total"] == 200 and step["step"] >= 1
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
    done = wait_done(client, job_id)
    assert done["state"] == "cancelled" and done["progress"]["step"] < 200
    assert settled(client) == (CREDITS, 0)
    assert client.get("/v1/assets").json()["data"] == []
    started = time.monotonic()  # the replica is free: no 200-step call runs on
    assert client.post("/v1/generations", json=FAST).status_code == 200
    assert time.monotonic() - started < 20


def test_a_sync_client_that_hangs_up_is_cancelled_on_the_replica(server, client):
    seen: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            if held(client)[1]:
                seen.append(held(client)[1])
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    thread.start()
    caller = httpx.Client(base_url=server.url, headers=client.headers)
    with caller, pytest.raises(httpx.ReadTimeout):  # the read timeout hangs up
        caller.post("/v1/generations", json=SLOW, timeout=httpx.Timeout(60, read=5))
    thread.join()
    assert seen == [2]  # it ran when its client went away
    assert settled(client) == (CREDITS, 0)
    assert client.get("/v1/assets").json()["data"] == []
    started = time.monotonic()
    assert client.post("/v1/generations", json=FAST).status_code == 200
    assert time.monotonic() - started < 20
