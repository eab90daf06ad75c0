"""``POST /v1/batches`` over the real app: a JSONL upload checked line by line before
anything runs, then rendered as a ``batch`` job on a local Ray (Ray Data under the job's
Ray task) whose images are the tenant's assets, charged at HTTP's prices."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from secrets_for_tests import TEST_SECRET
from sqlalchemy import func, select

from serving.core.ledger.schema import jobs
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from serving.ray.jobs import RayJobBackend


def gen(prompt: str = "a kiln", **fields: Any) -> dict[str, Any]:
    """A cheap generation line on the tiny SD 1.5 (128 px, 2 steps: 1 credit an image)."""
    return {"kind": "generation", "model": "tiny-sd15", "prompt": prompt, "steps": 2,
            "resolution": "128px", **fields}  # fmt: skip


def jsonl(*lines: dict[str, Any] | str) -> bytes:
    return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode() + b"\n"


def png_b64(size: int = 32) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 90, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def upload(data: bytes, **form: str) -> dict[str, Any]:
    """Multipart arguments of a JSONL upload (field ``file``, as OpenAI's batch upload)."""
    return {"files": {"file": ("jobs.jsonl", data, "application/jsonl")}, "data": form}


def wait_done(client: TestClient, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
        time.sleep(0.2)
    return job


def balance(client: TestClient) -> int:
    return client.get("/v1/credits").json()["balance"]


def asset_ids(client: TestClient) -> set[str]:
    return {a["id"] for a in client.get("/v1/assets", params={"limit": 100}).json()["data"]}


def job_count(app: FastAPI) -> int:
    with app.state.kiln.ledger.engine.begin() as conn:
        return conn.execute(select(func.count()).select_from(jobs)).scalar_one()


def sse_events(client: TestClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The finished job's events from its SSE stream, as (type, data)."""
    text = client.get(f"/v1/jobs/{job_id}/events").text
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.fixture
def make_app(tmp_path: Path, kiln_home: Path, catalog) -> Iterator[Callable[..., FastAPI]]:
    """Apps over a real SQLite file in tmp; the tiny models are the session's (linked
    into the home, where a job's worker process loads its catalog from)."""
    (tmp_path / "models").symlink_to(kiln_home / "models")
    made: list[FastAPI] = []

    def make(**overrides: Any) -> FastAPI:
        # Two torch threads: one Ray Data worker on 2 cores (one model load per batch).
        settings = Settings(home=tmp_path, secret=TEST_SECRET, torch_threads=2,
                            database=f"sqlite:///{tmp_path / 'kiln.db'}", **overrides)  # fmt: skip
        # Jobs as Ray tasks, as the Serve ingress runs them (the refusals start none).
        app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"),
                         job_backend=RayJobBackend())  # fmt: skip
        made.append(app)
        return app

    yield make
    for app in made:
        state = app.state.kiln
        state.job_runner.wait(timeout=120)
        state.job_runner.close()
        state.ledger.close()


# Refusals: nothing stored, nothing charged, no job.


def test_invalid_lines_are_refused_by_number_and_nothing_is_kept(make_app, make_client):
    app = make_app()
    client = make_client(app, credits=50)
    body = jsonl(
        gen(),
        "{not json",
        gen(model="no-such-model"),
        "",
        gen(n=13),
        gen(reference={"image": "in/cat.png"}),  # a path: an HTTP upload has no folder
        {"kind": "sculpture", "prompt": "x"},
    )
    r = client.post("/v1/batches", **upload(body))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (
        "file", "invalid_lines", "invalid_request_error",
    )  # fmt: skip
    assert error["message"].startswith("invalid lines 2, 3, 5, 6, 7; nothing was run")
    reasons = ("line 2: not valid JSON", "line 3:", "no-such-model", "line 5: n",
               "line 6: reference.image: file paths are not accepted", "line 7: kind")  # fmt: skip
    for reason in reasons:
        assert reason in error["message"]
    assert "x-request-id" in r.headers
    # The same file as a JSONL body answers the same.
    r = client.post("/v1/batches", content=body, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_lines"
    assert job_count(app) == 0 and balance(client) == 50
    assert not (app.state.kiln.settings.jobs_dir).exists() or not any(
        app.state.kiln.settings.jobs_dir.iterdir()
    )


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "param"),
    [
        (upload(b""), 400, "empty_file", "file"),
        (upload(b"\n  \n\n"), 400, "empty_file", "file"),
        (upload(b'{"kind": "generation", "prompt": "caf\xe9"}\n'), 400, "invalid_encoding", "file"),
        ({"content": jsonl(gen()), "headers": {"content-type": "application/json"}}, 400,
         "invalid_content_type", "file"),
        ({"content": jsonl(gen()), "headers": {"content-type": "text/plain"}}, 400,
         "invalid_content_type", "file"),
        ({"files": {"other": ("a.jsonl", jsonl(gen()))}}, 400, "invalid_value", "file"),
        ({"data": {"file": jsonl(gen()).decode()}, "files": {"x": ("x", b"")}}, 400,
         "invalid_value", "file"),
        (upload(jsonl(gen()), skip_invalid="maybe"), 400, "invalid_value", "skip_invalid"),
        (upload(jsonl(*[gen()] * 4)), 413, "too_many_lines", "file"),
        (upload(jsonl(gen(prompt="x" * 3000))), 413, "upload_too_large", "file"),
        ({"content": jsonl(gen(prompt="x" * 3000)),
          "headers": {"content-type": "application/jsonl"}}, 413, "upload_too_large", "file"),
        # Chunked, no Content-Length: refused as the bytes arrive.
        ({"content": iter([jsonl(gen())] * 40), "headers": {"content-type": "application/jsonl"}},
         413, "upload_too_large", "file"),
        (upload(jsonl("[1, 2]", gen(model="nope")), skip_invalid="true"), 400, "invalid_lines",
         "file"),
    ],
    ids=["empty", "blank-lines", "not-utf8", "json-type", "text-type", "no-file-field",
         "file-as-text", "bad-flag", "too-many-lines", "too-many-bytes", "body-too-many-bytes",
         "chunked-too-many-bytes", "skip-but-none-valid"],
)  # fmt: skip
def test_bad_uploads_are_4xx_and_keep_nothing(make_app, make_client, kwargs, status, code, param):
    app = make_app(batch_max_lines=3, batch_max_bytes=2000)
    client = make_client(app, credits=50)
    r = client.post("/v1/batches", **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    assert job_count(app) == 0 and balance(client) == 50


def test_a_batch_needs_an_api_key(make_app):
    client = TestClient(make_app(), raise_server_exceptions=False)
    r = client.post("/v1/batches", **upload(jsonl(gen())))
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


# Running: a real job on a local Ray.


@pytest.mark.slow
def test_a_batch_job_renders_the_tenants_assets_at_http_prices(
    local_ray, make_app, make_client, catalog
):
    app = make_app()
    client = make_client(app, credits=50)
    other = make_client(app, credits=50, name="other")
    body = jsonl(
        gen("a red kiln", seed=7),
        gen("two blue kilns", n=2, aspect_ratio="3:2"),
        gen(model="no-such-model"),
        {
            "kind": "edit",
            "tool": "recreate",
            "model": "tiny-sd15",
            "image": png_b64(),
            "strength": 0.5,
            "steps": 2,
            "prompt": "glazed",
        },  # fmt: skip
        # The flow-matching families run through the same lines (their own grid: 16 px).
        gen("a kiln at dawn", model="tiny-flux1", seed=5, aspect_ratio="3:2", steps=2),
        gen("a kiln at dusk", model="tiny-flux2-klein", seed=6, steps=2),
    )
    # Without skip_invalid the invalid line stops everything.
    r = client.post("/v1/batches", **upload(body))
    assert r.status_code == 400 and "invalid line 3;" in r.json()["error"]["message"]
    assert job_count(app) == 0

    r = client.post("/v1/batches", **upload(body, skip_invalid="true"))
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["object"], job["kind"], job["credits"]) == ("job", "batch", 0)
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["params"]["lines"] == 5 and job["params"]["skipped_invalid"] == 1
    assert (job["params"]["images"], job["params"]["file"]) == (6, "jobs.jsonl")
    assert job["params"]["kinds"] == {"generation": 4, "edit": 1}
    assert job["params"]["invalid"][0]["number"] == 3

    done = wait_done(client, job["id"])
    assert done["state"] == "succeeded", done
    result = done["result"]
    assert [line["line"] for line in result["lines"]] == [1, 2, 4, 5, 6]
    assert [line["error"] for line in result["lines"]] == [None] * 5
    assert [len(line["asset_ids"]) for line in result["lines"]] == [1, 2, 1, 1, 1]
    assert result["lines"][0]["seeds"] == [7] and len(result["lines"][1]["seeds"]) == 2
    kinds = ["generation", "generation", "edit", "generation", "generation"]
    assert [line["kind"] for line in result["lines"]] == kinds
    assert [line["seeds"] for line in result["lines"][3:]] == [[5], [6]]
    made = set(result["asset_ids"])
    assert len(made) == result["images"] == 6

    # The images are the tenant's assets, and nobody else's.
    assert asset_ids(client) == made
    assert not asset_ids(other) & made
    some = result["lines"][1]["asset_ids"][0]
    assert other.get(f"/v1/assets/{some}").status_code == 404
    asset = client.get(f"/v1/assets/{some}").json()
    assert (asset["width"], asset["height"]) == (128, 88)  # 3:2 at 128 px, sides of 8
    # FLUX assets: their model, its provider terms, sides on FLUX's 16 px grid.
    for line, model in zip(result["lines"][3:], ("tiny-flux1", "tiny-flux2-klein"), strict=True):
        flux_asset = client.get(f"/v1/assets/{line['asset_ids'][0]}").json()
        assert flux_asset["model"] == model
        assert flux_asset["terms"]["license_id"] == catalog.get(model).terms.license_id
        assert flux_asset["width"] % 16 == 0 and flux_asset["height"] % 16 == 0
    assert (flux_asset["width"], flux_asset["height"]) == (128, 128)

    # Charged as HTTP charges: 1 credit a 128 px tiny-sd15 image, and the catalog's
    # recreate price for the edit; the job itself charged nothing.
    spec = catalog.get("tiny-sd15")
    flux = [catalog.get(m).price("128px", 1) for m in ("tiny-flux1", "tiny-flux2-klein")]
    expected = 3 * int(spec.price("128px", 1)) + catalog.price_of("recreate") + int(sum(flux))
    assert balance(client) == 50 - expected and balance(other) == 50
    assert client.get("/v1/credits").json()["held"] == 0

    # Progress was reported (images done of the total, rate, ETA) and streamed.
    events = sse_events(client, job["id"])
    states = [data["state"] for kind, data in events if kind == "state"]
    assert states == ["queued", "running", "succeeded"]
    progress = [d for kind, d in events if kind == "progress" and d["stage"] == "rendering"]
    assert progress, events
    assert progress[-1]["images_done"] == progress[-1]["images_total"] == 6
    assert {"images_per_s", "eta_s", "lines_done", "lines_total"} <= set(progress[-1])
    # The workspace (staged lines, the runner's files) is gone; the assets stay.
    assert not (app.state.kiln.settings.jobs_dir / job["id"]).exists()


@pytest.mark.slow
def test_cancelling_a_running_batch_stops_it(local_ray, make_app, make_client):
    app = make_app()
    client = make_client(app, credits=500)
    lines = 30
    body = jsonl(*[gen(f"kiln {i}") for i in range(lines)])
    r = client.post("/v1/batches", content=body, headers={"content-type": "application/jsonl"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 180
    while client.get(f"/v1/jobs/{job_id}").json()["progress"].get("images_done", 0) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["cancel_requested"], r.text
    done = wait_done(client, job_id, timeout=60)
    assert done["state"] == "cancelled", done
    progress = done["progress"]
    assert progress["stage"] == "cancelled"
    kept = [asset for line in progress["kept"] for asset in line["asset_ids"]]
    assert 1 <= len(kept) < lines, progress
    # What was kept is the tenant's and was charged (1 credit a 128 px image). A line
    # a worker finished after the cancel is charged and stored too, and named by the job;
    # nothing stays held (a line cut off mid-way is released).
    owned = asset_ids(client)
    assert set(kept) <= owned and len(owned) < lines
    late = progress["finished_after_cancel"]
    assert len(kept) + sum(line["credits_charged"] for line in late) == len(owned)
    assert not {line["line"] for line in late} & {line["line"] for line in progress["kept"]}
    credits = client.get("/v1/credits").json()
    assert (credits["balance"], credits["held"]) == (500 - len(owned), 0), credits


@pytest.mark.slow
def test_a_batch_whose_every_line_fails_is_failed_and_charges_nothing(
    local_ray, make_app, make_client
):
    app = make_app()
    client = make_client(app, credits=0)  # no pre-check: each line meets its own 402
    r = client.post("/v1/batches", **upload(jsonl(gen("one"), gen("two", n=2))))
    assert r.status_code == 202, r.text
    done = wait_done(client, r.json()["id"])
    assert done["state"] == "failed" and done["result"] is None, done
    assert done["error"].startswith("every line of the batch failed (2): line 1: not enough")
    assert "line 2: not enough credits" in done["error"]
    assert asset_ids(client) == set()
    credits = client.get("/v1/credits").json()
    assert (credits["balance"], credits["held"]) == (0, 0)


def test_reconciling_a_stopped_run_releases_holds_and_names_late_lines(tmp_path):
    from serving.core.ledger import Ledger
    from serving.ray.batch.jobs import reconcile_stopped_run
    from serving.ray.batch.worker import request_id

    with Ledger(f"sqlite:///{tmp_path / 'kiln.db'}") as ledger:
        tenant = ledger.create_tenant("studio").id
        other = ledger.create_tenant("other").id
        ledger.grant(tenant, 100)
        ledger.grant(other, 100)
        received = ledger.reserve(tenant, 2, request_id("run_a", 1))  # the job got line 1
        ledger.capture(received, 2)
        ledger.release(received)
        late = ledger.reserve(tenant, 3, request_id("run_a", 2))  # finished after the stop
        ledger.capture(late, 1)
        ledger.capture(late, 1)
        ledger.release(late)
        ledger.reserve(tenant, 4, request_id("run_a", 3))  # cut off mid-way: still held
        ledger.reserve(tenant, 5, request_id("run_b", 3))  # another run's line
        ledger.reserve(other, 6, request_id("run_a", 3))  # another tenant's
        found, released = reconcile_stopped_run(ledger, tenant, {"run_a"}, [1, 2, 3, 4], {1})
        assert found == [{"line": 2, "credits_charged": 2}] and released == 4
        # Charged 2 + 2, line 3's 4 back, run_b's 5 still held.
        assert (ledger.balance(tenant).available, ledger.balance(tenant).held) == (100 - 4 - 5, 5)
        assert ledger.balance(other).held == 6
