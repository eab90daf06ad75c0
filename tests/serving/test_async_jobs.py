"""Image requests as jobs (``Prefer: respond-async``), cancel, hang-up and ``GET /v1/jobs``
over HTTP, on a real server without Ray (``tests/serving/app_server.py``: uvicorn over a
``LocalModelClient``, tiny models on CPU). The Ray path (the replica's streaming method)
is tested on the live server in tests/e2e/test_async_live.py.

Every image route answers 202 with a job whose ``result`` is the synchronous body, same
seed same pixels; progress events come per step; a cancel or a hang-up after the first
step stops the call, charges nothing and stores nothing; bad input is refused at submit.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import app_server
import httpx
import numpy as np
import pytest
from edit_samples import box_mask, decode, photo, png, png_b64

from serving.core.accounts import Accounts
from serving.core.ledger import Ledger

ASYNC = {"prefer": "respond-async"}
FAST = {"model": "tiny-sd15", "prompt": "a kiln at dusk", "steps": 2, "seed": 21}
# Far longer than the tests wait: 200 steps of 2 images at 256 px (2 credits an image).
SLOW = {"model": "tiny-sd15", "prompt": "a slow kiln", "resolution": "256px", "steps": 200,
        "n": 2, "seed": 3}  # fmt: skip
CREDITS = 1000


class Server:
    def __init__(self, url: str, ledger: Ledger) -> None:
        self.url = url
        self.ledger = ledger

    def client(self, credits: int = CREDITS) -> httpx.Client:
        accounts = Accounts(self.ledger)
        tenant = accounts.create_tenant("studio")
        if credits:
            self.ledger.grant(tenant.id, credits)
        key = accounts.create_key(tenant.id).key
        client = httpx.Client(
            base_url=self.url, timeout=120, headers={"authorization": f"Bearer {key}"}
        )
        client.tenant_id = tenant.id  # type: ignore[attr-defined]
        return client


@pytest.fixture(scope="module")
def server(kiln_home: Path, catalog, tmp_path_factory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("async_jobs")
    url = f"sqlite:///{folder / 'kiln.db'}"
    ledger = Ledger(url)
    process, base = app_server.start(kiln_home, url, folder / "server.log")
    try:
        yield Server(base, ledger)
    finally:
        process.terminate()
        process.wait(timeout=30)
        ledger.close()


def balance(client: httpx.Client) -> tuple[int, int]:
    body = client.get("/v1/credits").json()
    return body["balance"], body.get("held", 0)


def wait_done(client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def events(client: httpx.Client, job_id: str, stop_at_progress: bool = False) -> list[tuple]:
    """The job's SSE events as (type, data); stops after the first progress one if asked."""
    found: list[tuple] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                found.append((kind, json.loads(line[6:])))
                if stop_at_progress and kind == "progress":
                    break
    return found


def submit(client: httpx.Client, path: str, **kwargs) -> dict:
    response = client.post(path, headers={**ASYNC, **kwargs.pop("headers", {})}, **kwargs)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "running" and job["result"] is None
    return job


def pixels_of(body: dict) -> list[np.ndarray]:
    items = body.get("images") or body.get("data")
    return [decode(item.get("b64_json") or item.get("image")) for item in items]


def same_answer(sync: dict, job_result: dict) -> None:
    """Same shape and keys, same pixels (ids and timings differ by nature)."""
    assert set(job_result) == set(sync)
    assert len(pixels_of(job_result)) == len(pixels_of(sync))
    for a, b in zip(pixels_of(job_result), pixels_of(sync), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_async_generation_answers_a_job_whose_result_is_the_sync_body(server):
    client = server.client()
    sync = client.post("/v1/generations", json=FAST)
    assert sync.status_code == 200, sync.text
    before = balance(client)
    job = submit(client, "/v1/generations", json=FAST)
    assert job["kind"] == "generation" and job["credits"] == 1
    assert job["params"]["model"] == "tiny-sd15" and job["params"]["route"] == "/v1/generations"
    seen = events(client, job["id"])
    done = wait_done(client, job["id"])
    assert done["state"] == "succeeded"
    same_answer(sync.json(), done["result"])
    assert done["result"]["credits_charged"] == 1 and balance(client) == (before[0] - 1, 0)
    steps = [data for kind, data in seen if kind == "progress"]
    assert steps and steps[-1]["step"] == steps[-1]["total"] == 2
    assert {"images_done", "images"} <= set(steps[-1])
    assert seen[-1] == ("state", {"state": "succeeded", "result": done["result"]})
    # A preference Kiln does not know is ignored (RFC 7240): a synchronous answer.
    plain = client.post("/v1/generations", json=FAST, headers={"prefer": "handling=lenient"})
    assert plain.status_code == 200 and plain.json()["object"] == "generation"


def test_every_image_route_runs_async_with_the_sync_pixels(server):
    client = server.client()
    image, mask = photo(), box_mask()
    edit = {"tool": "replace", "model": "tiny-sd15", "prompt": "a lantern", "seed": 5,
            "steps": 2, "image": png_b64(image), "mask": png_b64(mask)}  # fmt: skip
    agentic = {**FAST, "prompt": "a bowl", "candidates": 1,
               "references": [{"image": png_b64(photo(64, 64, seed=2))}]}  # fmt: skip
    form = {"model": "tiny-sd15", "seed": "9", "n": "1"}
    openai_mask = np.full((*mask.shape, 4), 255, np.uint8)
    openai_mask[..., 3] = np.where(mask == 255, 0, 255)
    files = {"image": ("in.png", png(image), "image/png")}
    cases = [
        ("edit", "/v1/edits", {"json": edit}),
        ("agentic", "/v1/agentic/generations", {"json": agentic}),
        ("openai_image", "/v1/images/generations",
         {"json": {"model": "tiny-sd15", "prompt": "a cup", "seed": 4, "size": "128x128"}}),
        ("openai_image", "/v1/images/edits",
         {"data": {**form, "prompt": "a lantern"},
          "files": {**files, "mask": ("m.png", png(openai_mask), "image/png")}}),
        ("openai_image", "/v1/images/variations", {"data": form, "files": files}),
    ]  # fmt: skip
    for kind, path, body in cases:
        sync = client.post(path, **body)
        assert sync.status_code == 200, (path, sync.text)
        job = submit(client, path, **body)
        assert job["kind"] == kind
        done = wait_done(client, job["id"])
        assert done["state"] == "succeeded", (path, done)
        same_answer(sync.json(), done["result"])


def test_cancel_after_the_first_step_stops_the_call_and_charges_nothing(server):
    client, other = server.client(), server.client()
    job = submit(client, "/v1/generations", json=SLOW)
    assert job["credits"] == 4 and balance(client) == (CREDITS - 4, 4)
    seen = events(client, job["id"], stop_at_progress=True)
    assert seen[-1][0] == "progress" and seen[-1][1]["total"] == 200
    assert other.delete(f"/v1/jobs/{job['id']}").status_code == 404  # another tenant's
    cancelling = client.delete(f"/v1/jobs/{job['id']}")
    assert cancelling.status_code == 200 and cancelling.json()["cancel_requested"] is True
    done = wait_done(client, job["id"], timeout=30)
    assert done["state"] == "cancelled" and done["result"] is None
    assert done["progress"]["step"] < 200  # stopped mid-call, not run to the end
    assert balance(client) == (CREDITS, 0)
    assert client.get("/v1/assets").json()["data"] == []
    again = client.delete(f"/v1/jobs/{job['id']}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    # The replica is free at once: the next call does not wait out 200 steps.
    started = time.monotonic()
    assert client.post("/v1/generations", json=FAST).status_code == 200
    assert time.monotonic() - started < 15


def test_a_client_that_hangs_up_cancels_its_request_and_its_credits_return(server):
    client = server.client()
    held: list[int] = []

    def watch() -> None:
        # The call starts once its credits are held; its first step follows at once.
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not held:
            if balance(client)[1]:
                held.append(balance(client)[1])
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    with httpx.Client(base_url=server.url, headers=client.headers) as caller:
        thread.start()
        with pytest.raises(httpx.ReadTimeout):
            # The read timeout is the hang-up: the client closes the connection.
            caller.post("/v1/generations", json=SLOW, timeout=httpx.Timeout(60, read=4))
    thread.join()
    assert held == [4]  # it was running when its client went away
    deadline = time.monotonic() + 20
    while balance(client) != (CREDITS, 0):
        assert time.monotonic() < deadline, balance(client)
        time.sleep(0.1)
    assert client.get("/v1/assets").json()["data"] == []
    started = time.monotonic()
    assert client.post("/v1/generations", json=FAST).status_code == 200
    assert time.monotonic() - started < 15  # the 200-step call did not run on


def test_bad_async_requests_are_refused_at_submit_with_nothing_stored(server):
    client = server.client()
    bad = client.post("/v1/generations", json={**FAST, "n": 13}, headers=ASYNC)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "n"
    unknown = client.post("/v1/generations", json={**FAST, "model": "nope"}, headers=ASYNC)
    assert unknown.status_code == 404 and "error" in unknown.json()
    poor = server.client(credits=1)
    broke = poor.post("/v1/generations", json={**FAST, "n": 2}, headers=ASYNC)
    assert broke.status_code == 402 and broke.json()["error"]["code"] == "insufficient_credits"
    assert balance(client) == (CREDITS, 0) and balance(poor) == (1, 0)
    assert client.get("/v1/jobs").json()["data"] == []
    assert poor.get("/v1/jobs").json()["data"] == []


def test_an_idempotent_replay_answers_the_same_job(server):
    client = server.client()
    key = {"idempotency-key": "async-once"}
    first = submit(client, "/v1/generations", json=FAST, headers=key)
    replay = client.post("/v1/generations", json=FAST, headers={**ASYNC, **key})
    assert replay.status_code == 202 and replay.json()["id"] == first["id"]
    assert replay.headers["location"] == f"/v1/jobs/{first['id']}"
    assert replay.headers["idempotent-replayed"] == "true"
    wait_done(client, first["id"])
    assert balance(client) == (CREDITS - 1, 0)  # charged once
    # The same key for the synchronous form of the body is another request: 409.
    assert client.post("/v1/generations", json=FAST, headers=key).status_code == 409


def test_the_jobs_list_filters_by_kind_and_state_and_pages(server):
    client = server.client()
    made = [submit(client, "/v1/generations", json={**FAST, "seed": s})["id"] for s in (1, 2)]
    openai = submit(client, "/v1/images/generations", json={"model": "tiny-sd15", "prompt": "x"})
    for job_id in [*made, openai["id"]]:
        wait_done(client, job_id)
    listed = client.get("/v1/jobs").json()
    assert [job["id"] for job in listed["data"]] == [openai["id"], *reversed(made)]
    assert {job["state"] for job in listed["data"]} == {"succeeded"}
    kind = client.get("/v1/jobs", params={"kind": "generation"}).json()["data"]
    assert [job["id"] for job in kind] == list(reversed(made))
    assert client.get("/v1/jobs", params={"state": "running"}).json()["data"] == []
    page = client.get("/v1/jobs", params={"limit": 1}).json()
    assert page["has_more"] and [j["id"] for j in page["data"]] == [openai["id"]]
    rest = client.get("/v1/jobs", params={"limit": 5, "after": openai["id"]}).json()
    assert not rest["has_more"] and [j["id"] for j in rest["data"]] == list(reversed(made))
    assert server.client().get("/v1/jobs").json()["data"] == []  # only the caller's
    for params, name in [({"kind": "nope"}, "kind"), ({"state": "done"}, "state"),
                         ({"after": "job_nope"}, "after")]:  # fmt: skip
        refused = client.get("/v1/jobs", params=params)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == name
