"""POST /v1/styles/train on the tiny FLUX models through the real app (jobs on the
in-process backend): the job trains a FLUX style that is registered for its owner and
generates; training images over the limits are refused naming the field, with nothing
stored or charged."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from secrets_for_tests import TEST_SECRET

from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app

sys.path.insert(0, str(Path(__file__).parents[1] / "jobs"))
from job_helpers import image_files, wait_done  # noqa: E402


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, secret=TEST_SECRET, training_steps=2, training_rank=4)


@pytest.fixture
def app(settings, catalog) -> Iterator:
    app = create_app(settings, catalog, LocalModelClient(catalog, device="cpu"))
    yield app
    state = app.state.kiln
    state.job_runner.wait(timeout=120)
    state.job_runner.close()
    state.ledger.close()


@pytest.mark.parametrize("model", ["tiny-flux1", "tiny-flux2-klein"])
def test_a_flux_style_trains_as_a_job_and_generates(app, make_client, model):
    client = make_client(app)
    r = client.post(
        "/v1/styles/train",
        data={"name": "Orange", "model": model, "trigger_word": "kilnorange"},
        files=image_files(5),
    )
    assert r.status_code == 202, r.text
    done = wait_done(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    style = done["result"]["style"]
    assert (style["kind"], style["base_model"], style["rank"]) == ("private", model, 4)
    body = {"model": model, "prompt": "a pot", "style": style["id"], "seed": 3}
    r = client.post("/v1/generations", json=body)
    assert r.status_code == 200, r.text
    asset = client.get(f"/v1/assets/{r.json()['data'][0]['asset_id']}").json()
    assert asset["style"] == style["id"] and asset["prompt"] == "kilnorange, a pot"


@pytest.mark.parametrize(
    ("case", "status", "param"),
    [("four images", 400, "images"), ("too many pixels", 413, "images[0]")],
)
def test_flux_training_images_over_the_limits_are_refused(
    app, make_client, settings, case, status, param
):
    client = make_client(app)
    files = image_files(4 if case == "four images" else 5)
    if case == "too many pixels":
        app.state.kiln.settings = settings.with_overrides(training_image_max_pixels=32 * 32)
    r = client.post("/v1/styles/train", data={"name": "O", "model": "tiny-flux1"}, files=files)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
    credits = client.get("/v1/credits").json()
    assert (credits["balance"], credits["held"]) == (1000, 0)
    jobs_dir = app.state.kiln.settings.jobs_dir
    assert not jobs_dir.exists() or not list(jobs_dir.iterdir())
    assert client.get("/v1/styles").json()["data"] == []
