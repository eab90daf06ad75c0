"""POST /v1/styles/train and the job routes over HTTP (the real app, a TestClient, jobs on
the in-process backend), on SQLite and PostgreSQL: 202 and a job, progress over SSE,
the private style registered for its owner alone, the first style free and the next
priced, cancellation that keeps nothing, and bad uploads refused with nothing stored or
charged."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from job_helpers import image_files, png, wait_done

from serving.core.jobs import Jobs
from serving.core.model_client import LocalModelClient
from serving.http.app import create_app

MODEL = "tiny-sd15"


def train(client: TestClient, count: int = 5, **fields) -> object:
    data = {"name": "Orange", "model": MODEL, **fields}
    return client.post("/v1/styles/train", data=data, files=image_files(count))


def sse_events(client: TestClient, job_id: str, headers: dict | None = None) -> list[tuple]:
    """(id, event, data) of every message of the stream, read until the server ends it."""
    events, current = [], {}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if current:
                    events.append((int(current["id"]), current["event"], current["data"]))
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = json.loads(value) if field == "data" else value
    return events


def balance(client: TestClient) -> tuple[int, int]:
    """(available, held) credits of the client's tenant."""
    credits = client.get("/v1/credits").json()
    return credits["balance"], credits["held"]


def test_training_runs_as_a_job_and_registers_a_private_style(app, make_client):
    owner, other = make_client(app), make_client(app, name="other")
    response = train(owner, 6, trigger_word="kilnorange", captions="a pot", seed="7")
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert (job["object"], job["kind"], job["credits"]) == ("job", "style_training", 0)
    assert job["state"] in ("queued", "running", "succeeded")

    events = sse_events(owner, job["id"])
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
    states = [data["state"] for _, kind, data in events if kind == "state"]
    assert states[:2] == ["queued", "running"] and states[-1] == "succeeded"
    steps = [data for _, kind, data in events if kind == "progress" and data.get("loss")]
    assert [p["step"] for p in steps] == [1, 2] and all(p["total"] == 2 for p in steps)
    # Resuming after an event id sends only what came after it.
    assert sse_events(owner, job["id"], {"last-event-id": "2"}) == events[2:]
    # Ids no event has, past what the database's integer holds too: all of them, or none.
    assert sse_events(owner, job["id"], {"last-event-id": "-" + "9" * 30}) == events
    assert sse_events(owner, job["id"], {"last-event-id": "9" * 30}) == []

    done = wait_done(owner, job["id"])
    assert done["state"] == "succeeded" and done["progress"]["step"] == 2
    style = done["result"]["style"]
    assert done["result"]["style_id"] == style["id"] and done["result"]["credits_charged"] == 0
    assert (style["kind"], style["owner"], style["name"]) == ("private", owner.tenant_id, "Orange")
    assert style["trigger_words"] == ["kilnorange"] and style["rank"] == 4
    assert [s["id"] for s in owner.get("/v1/styles").json()["data"]] == [style["id"]]
    assert other.get("/v1/styles").json()["data"] == []
    assert balance(owner) == (1000, 0)  # the first private style is free
    assert not list((app.state.kiln.settings.jobs_dir).iterdir())  # workspace removed

    # Another tenant's job does not exist for it, on every route.
    for method, path in (
        ("GET", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
        ("DELETE", f"/v1/jobs/{job['id']}"),
    ):
        answer = other.request(method, path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "job_not_found"
    assert owner.get("/v1/jobs/job_nope").status_code == 404

    # The second style is priced, and charged once it succeeds.
    second = train(owner)
    assert second.status_code == 202 and second.json()["credits"] == 200
    assert wait_done(owner, second.json()["id"])["result"]["credits_charged"] == 200
    assert balance(owner) == (800, 0)
    assert len(owner.get("/v1/styles").json()["data"]) == 2


def test_cancel_discards_the_work_and_returns_the_credits(app, make_client, settings):
    client = make_client(app)
    state = app.state.kiln
    # A training that succeeded before: this one is priced (and reserved).
    earlier = state.jobs.create(client.tenant_id, "style_training", {})
    state.jobs.start(earlier.id)
    state.jobs.finish(earlier.id, "succeeded", result={})

    response = train(client, steps=str(settings.training_max_steps))
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert balance(client) == (800, 200)
    deadline = time.monotonic() + 120
    while client.get(f"/v1/jobs/{job_id}").json()["progress"].get("step", 0) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelling = client.delete(f"/v1/jobs/{job_id}")
    assert cancelling.status_code == 200 and cancelling.json()["cancel_requested"] is True
    done = wait_done(client, job_id)
    assert done["state"] == "cancelled" and done["result"] is None
    assert done["progress"]["step"] < settings.training_max_steps
    assert client.get("/v1/styles").json()["data"] == []
    assert balance(client) == (1000, 0)
    assert not (settings.jobs_dir / job_id).exists()
    assert not settings.styles_dir.exists() or not list(settings.styles_dir.iterdir())
    # Cancelling a finished job is a conflict (issue 22: every kind), nothing changes.
    assert client.delete(f"/v1/jobs/{job_id}").json()["error"]["code"] == "job_finished"


def test_cancelling_a_queued_job_ends_it_at_once(app, make_client):
    client = make_client(app)
    state = app.state.kiln
    job = state.jobs.create(client.tenant_id, "style_training", {})  # never submitted
    response = client.delete(f"/v1/jobs/{job.id}")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    events = sse_events(client, job.id)
    assert [(kind, data["state"]) for _, kind, data in events] == [
        ("state", "queued"),
        ("state", "cancelled"),
    ]


def _nothing_stored_or_charged(app, client: TestClient) -> None:
    state = app.state.kiln
    assert (
        Jobs(state.ledger.engine).count(
            client.tenant_id, "style_training", ("queued", "running", "succeeded", "failed")
        )
        == 0
    )
    jobs_dir = state.settings.jobs_dir
    assert not jobs_dir.exists() or not list(jobs_dir.iterdir())
    assert balance(client) == (1000, 0)
    assert [e["kind"] for e in client.get("/v1/credits").json()["entries"]] == ["grant"]


@pytest.mark.parametrize(
    "case, status, param",
    [
        ("four images", 400, "images"),
        ("fifty-one images", 400, "images"),
        ("a text file among them", 400, "images[2]"),
        ("truncated png", 400, "images[1]"),
        ("too many bytes", 413, "images[3]"),
        ("too many pixels", 413, "images[0]"),
        ("no name", 400, "name"),
        ("too many steps", 400, "steps"),
        ("captions of the wrong count", 400, "captions"),
        ("unknown model", 404, "model"),
    ],
)
def test_bad_uploads_are_refused_with_nothing_stored_or_charged(
    app, make_client, settings, case, status, param
):
    client = make_client(app)
    data = {"name": "Orange", "model": MODEL}
    files = image_files(6)
    if case == "four images":
        files = image_files(4)
    elif case == "fifty-one images":
        files = image_files(51, size=8)
    elif case == "a text file among them":
        files[2] = ("images", ("notes.txt", b"not an image at all", "text/plain"))
    elif case == "truncated png":
        files[1] = ("images", ("cut.png", png((1, 2, 3))[:200], "image/png"))
    elif case == "too many bytes":
        big = png((255, 0, 0), size=2048)  # noisy: megabytes
        assert len(big) > 1 << 20
        files[3] = ("images", ("big.png", big, "image/png"))
        app.state.kiln.settings = settings.with_overrides(training_image_max_bytes=1 << 20)
    elif case == "too many pixels":
        app.state.kiln.settings = settings.with_overrides(training_image_max_pixels=32 * 32)
    elif case == "no name":
        del data["name"]
    elif case == "too many steps":
        data["steps"] = str(settings.training_max_steps + 1)
    elif case == "captions of the wrong count":
        data["captions"] = ["one", "two"]
    elif case == "unknown model":
        data["model"] = "no-such-model"
    response = client.post("/v1/styles/train", data=data, files=files)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    _nothing_stored_or_charged(app, client)


def test_a_request_over_the_total_size_is_refused_before_it_is_read(make_client, settings, catalog):
    # The body guard (serving/http/body_guard.py) holds the training route to
    # KILN_BODY_MAX_TRAINING, whatever each image's size.
    small = settings.with_overrides(body_max_training=5000)
    app = create_app(small, catalog, LocalModelClient(catalog, device="cpu"))
    client = make_client(app)
    response = client.post(
        "/v1/styles/train", data={"name": "Orange", "model": MODEL}, files=image_files(6)
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large" and "KILN_BODY_MAX_TRAINING" in error["message"]
    _nothing_stored_or_charged(app, client)


def test_not_enough_credits_is_402_with_nothing_stored(app, make_client):
    client = make_client(app, credits=10)
    state = app.state.kiln
    earlier = state.jobs.create(client.tenant_id, "style_training", {})
    state.jobs.start(earlier.id)
    state.jobs.finish(earlier.id, "succeeded", result={})
    response = train(client)
    assert response.status_code == 402
    assert not state.settings.jobs_dir.exists() or not list(state.settings.jobs_dir.iterdir())
    assert balance(client) == (10, 0)
