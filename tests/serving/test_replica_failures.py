"""A model replica that dies under a call: retried once, else 503 ``model_unavailable``.

The app is the real one (HTTP routes, paid path, ledger) over ``RayModelClient`` and
``RayImageToPromptClient``, whose handles stand in for Serve's: each call runs the tiny
models in this process (``LocalModelClient``), and the first ``deaths`` calls fail as a
SIGKILLed replica's do, with Ray's own ``ActorDiedError``. The live kill of a real replica
process is tests/e2e/test_replica_kill_live.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from ray.exceptions import ActorDiedError, RayTaskError
from secrets_for_tests import TEST_SECRET

from pipelines.param_error import ParamError
from serving.core.errors import KilnError
from serving.core.metrics import Metrics
from serving.core.model_client import LocalModelClient
from serving.core.settings import Settings
from serving.http.app import create_app
from serving.ray import replica_failures
from serving.ray.errors import core_error
from serving.ray.image_to_prompt.client import RayImageToPromptClient
from serving.ray.model_client import RayModelClient
from serving.ray.replica_failures import ReplicaFailures

MODEL = "tiny-sd15"


class _Method:
    """``handle.<method>`` of a Serve handle: ``.remote(...)`` gives an awaitable."""

    def __init__(self, call: Any) -> None:
        self.remote = call


class DyingHandle:
    """A Serve handle whose first ``deaths`` work calls die as a killed replica's do
    (``ActorDiedError``); the others run ``run`` (the tiny models in-process).
    ``ready_answers=False``: no replacement replica ever answers."""

    def __init__(self, run: Any, deaths: int = 0, ready_answers: bool = True) -> None:
        self.deaths = deaths
        self.calls = 0
        self.ready_answers = ready_answers
        self.ready = _Method(self._ready)
        # The replica's generate also takes the call's fair-queue group size.
        self.generate = _Method(self._work(lambda params, group_size=0: run(params)))
        self.check = _Method(self._work(lambda params: asyncio.sleep(0)))
        self.extract = _Method(self._work(run))

    def options(self, **_: Any) -> DyingHandle:
        return self

    def _work(self, run: Any) -> Any:
        async def call(*args: Any) -> Any:
            self.calls += 1
            if self.deaths:
                self.deaths -= 1
                raise ActorDiedError()
            return await run(*args)

        return call

    async def _ready(self) -> str:
        if not self.ready_answers:
            await asyncio.sleep(3600)
        return MODEL


@pytest.fixture(scope="module")
def local_models(catalog) -> LocalModelClient:
    return LocalModelClient(catalog, device="cpu")


def app_over(tmp_path: Path, catalog, handle: DyingHandle, clip: DyingHandle | None = None):
    failures = ReplicaFailures()
    models = RayModelClient({MODEL: handle}, failures=failures)
    clip_client = RayImageToPromptClient(clip, "tiny-clip", failures) if clip else None
    app = create_app(
        Settings(home=tmp_path, secret=TEST_SECRET), catalog, models, image_to_prompt=clip_client
    )
    failures.metrics = app.state.kiln.metrics
    return app


def pixels_of(answer: dict) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(answer["data"][0]["b64_json"]))) as image:
        return np.asarray(image.convert("RGB"))


def metric(app: Any, name: str, **labels: str) -> float:
    value = app.state.kiln.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


BODY = {"model": MODEL, "prompt": "a kiln at dusk", "seed": 11, "n": 2}


@pytest.fixture(autouse=True)
def quick_report(monkeypatch):
    monkeypatch.setattr(replica_failures, "REPORT_AFTER_S", 0.0)


def test_a_generation_whose_replica_dies_is_retried_with_the_same_pixels(
    tmp_path, catalog, local_models, make_client, caplog
):
    steady = make_client(app_over(tmp_path / "a", catalog, DyingHandle(local_models.generate)))
    undisturbed = steady.post("/v1/generations", json=BODY)
    assert undisturbed.status_code == 200, undisturbed.text

    handle = DyingHandle(local_models.generate, deaths=1)
    app = app_over(tmp_path / "b", catalog, handle)
    client = make_client(app, credits=10)
    with caplog.at_level(logging.ERROR, logger="serving.ray.replica_failures"):
        answer = client.post("/v1/generations", json=BODY, headers={"x-request-id": "req_dies"})
    assert answer.status_code == 200, answer.text
    assert handle.calls == 2
    assert np.array_equal(pixels_of(answer.json()), pixels_of(undisturbed.json()))
    credits = client.get("/v1/credits").json()
    assert (credits["balance"], credits["held"]) == (8, 0)
    assert metric(app, "kiln_model_replica_failures_total", model=MODEL) == 1
    assert metric(app, "kiln_model_replica_failed_requests_total", model=MODEL,
                  outcome="retried") == 1  # fmt: skip
    assert "kiln_model_replica_failures_total" in client.get("/metrics").text
    assert any("req_dies" in r.getMessage() and MODEL in r.getMessage() for r in caplog.records)


def test_a_retry_that_dies_too_answers_503_and_releases_the_reservation(
    tmp_path, catalog, local_models, make_client
):
    handle = DyingHandle(local_models.generate, deaths=2)
    app = app_over(tmp_path, catalog, handle)
    client = make_client(app, credits=10)
    answer = client.post("/v1/generations", json=BODY)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "model_unavailable"
    assert int(answer.headers["retry-after"]) >= 1
    assert handle.calls == 2  # once, and retried once: no more
    credits = client.get("/v1/credits").json()
    assert (credits["balance"], credits["held"]) == (10, 0)
    assert metric(app, "kiln_model_replica_failed_requests_total", model=MODEL,
                  outcome="unavailable") == 1  # fmt: skip
    # The next request is served.
    assert client.post("/v1/generations", json=BODY).status_code == 200


def test_no_replacement_within_the_wait_answers_503_without_a_retry(
    tmp_path, catalog, local_models, make_client, monkeypatch
):
    monkeypatch.setattr(replica_failures, "REPLACEMENT_WAIT_S", 0.1)
    handle = DyingHandle(local_models.generate, deaths=1, ready_answers=False)
    client = make_client(app_over(tmp_path, catalog, handle), credits=10)
    # Readiness is known from before the death: the request goes straight to the call.
    client.app.state.kiln.models._ready.add(MODEL)
    answer = client.post("/v1/generations", json=BODY)
    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "model_unavailable")
    assert handle.calls == 1
    assert client.get("/v1/credits").json()["held"] == 0


def test_an_extract_whose_clip_replica_dies_is_retried(
    tmp_path, catalog, local_models, make_client
):
    from serving.core.image_to_prompt.client import LocalImageToPromptClient

    local_clip = LocalImageToPromptClient(catalog, tmp_path / "clip")
    clip = DyingHandle(local_clip.extract, deaths=1)
    client = make_client(app_over(tmp_path, catalog, DyingHandle(local_models.generate), clip))
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buffer, format="PNG")
    answer = client.post("/v1/image-to-prompt",
                         json={"image": base64.b64encode(buffer.getvalue()).decode()})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert clip.calls == 2


def test_the_replicas_own_errors_and_cancellation_are_not_retried():
    failures = ReplicaFailures(Metrics())
    calls = []

    async def refuses() -> None:
        calls.append(1)
        raise RayTaskError("generate", "traceback", ParamError("prompt", "prompt too long"))

    async def ready() -> str:
        return MODEL

    with pytest.raises(ParamError):
        asyncio.run(failures.call(MODEL, refuses, ready))
    assert calls == [1]

    async def hung_up() -> None:
        dies = asyncio.ensure_future(failures.call(MODEL, never_ready_call, slow_ready))
        await asyncio.sleep(0.05)
        dies.cancel()  # the client hung up while the call waited for a replacement
        with pytest.raises(asyncio.CancelledError):
            await dies

    async def never_ready_call() -> None:
        calls.append(2)
        raise ActorDiedError()

    async def slow_ready() -> None:
        await asyncio.sleep(3600)

    asyncio.run(hung_up())
    assert calls == [1, 2]  # not retried after the hang-up


def test_requests_on_one_dead_replica_count_once_and_are_logged_together(caplog, monkeypatch):
    monkeypatch.setattr(replica_failures, "REPORT_AFTER_S", 0.2)
    metrics = Metrics()
    failures = ReplicaFailures(metrics)
    from serving.core.logs import current_request_id

    async def request(request_id: str) -> None:
        current_request_id.set(request_id)

        async def dies() -> None:
            raise ActorDiedError()

        async def ready() -> str:
            return MODEL

        with pytest.raises(KilnError):
            await failures.call(MODEL, dies, ready)

    async def burst() -> None:
        await asyncio.gather(request("req_a"), request("req_b"))
        await asyncio.sleep(0.3)  # the report

    with caplog.at_level(logging.ERROR, logger="serving.ray.replica_failures"):
        asyncio.run(burst())
    failures_total = metrics.registry.get_sample_value(
        "kiln_model_replica_failures_total", {"model": MODEL}
    )
    assert failures_total == 1
    lines = [r.getMessage() for r in caplog.records if "died under" in r.getMessage()]
    assert len(lines) == 1 and "req_a" in lines[0] and "req_b" in lines[0]


def test_a_dead_replica_outside_a_retry_is_a_503_not_a_500():
    error = core_error(ActorDiedError(), MODEL)
    assert isinstance(error, KilnError)
    assert (error.status, error.code) == (503, "model_unavailable")
    assert "retry-after" in error.headers
    wrapped = RayTaskError("ready", "traceback", ActorDiedError())
    assert core_error(wrapped, MODEL).code == "model_unavailable"
