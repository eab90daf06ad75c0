"""CUDA out-of-memory at the replica and over HTTP: health check, 503, nothing charged.

The model replica is the real ``ModelDeployment`` class (the constructor a Serve replica
runs) on tiny-sd15; the fault is injected by a forward pre-hook on its real UNet that
raises ``torch.OutOfMemoryError`` for every batch, as a card with no memory left would.
The HTTP test reaches that replica through ``ReplicaClient``, which calls it in-process
where the server would call it through its Serve handle (Ray itself is exercised by the
live tests); the exception Serve would wrap on the way is checked on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from secrets_for_tests import TEST_SECRET

from pipelines.oom import OutOfGpuMemory
from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from serving.core.settings import Settings
from serving.http.app import create_app
from serving.http.errors import api_error_for
from serving.ray.model_deployment import BatchItem, ModelDeployment

MODEL = "tiny-sd15"


def always_out_of_memory(module, args, kwargs) -> None:
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.fixture(scope="module")
def replica(catalog):
    settings = Settings(device="cpu", torch_threads=2, oom_max_failures=2)
    return ModelDeployment.func_or_class(settings, catalog.get(MODEL))


@pytest.fixture
def out_of_memory(replica) -> Iterator[None]:
    handle = replica.engine.pipe.unet.register_forward_pre_hook(
        always_out_of_memory, with_kwargs=True
    )
    try:
        yield
    finally:
        handle.remove()
        replica.engine.oom.consecutive_failures = 0


def run_one(replica, catalog, seed: int) -> GenerationOutput | BaseException:
    params = GenerationParams.build(catalog.get(MODEL), prompt="a kiln", n=2, seed=seed, steps=1)
    (result,) = asyncio.run(replica.run_batch([BatchItem(params, params.n)]))
    return result


def test_repeated_out_of_memory_fails_the_health_check(replica, catalog, out_of_memory):
    replica.check_health()  # healthy to begin with
    first = run_one(replica, catalog, seed=1)
    assert isinstance(first, OutOfGpuMemory)
    replica.check_health()  # one failure is not enough (KILN_OOM_MAX_FAILURES=2)
    assert isinstance(run_one(replica, catalog, seed=2), OutOfGpuMemory)
    with pytest.raises(RuntimeError, match="2 calls in a row ran out of GPU memory"):
        replica.check_health()


def test_a_success_between_failures_resets_the_count(replica, catalog):
    handle = replica.engine.pipe.unet.register_forward_pre_hook(
        always_out_of_memory, with_kwargs=True
    )
    try:
        assert isinstance(run_one(replica, catalog, seed=1), OutOfGpuMemory)
    finally:
        handle.remove()
    output = run_one(replica, catalog, seed=1)
    assert isinstance(output, GenerationOutput) and output.seeds == (1, 2)
    assert replica.engine.oom.consecutive_failures == 0
    replica.check_health()


class ReplicaClient:
    """The server's ``ModelClient`` over one in-process replica (instead of its handle):
    each request is a batch of one through the replica's batch step (Serve's batch queue
    in front of it exists only inside a Serve replica)."""

    def __init__(self, replica: ModelDeployment) -> None:
        self.replica = replica

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        (result,) = await self.replica.run_batch([BatchItem(params, params.n)])
        if isinstance(result, BaseException):
            raise result
        return result

    def unready(self) -> list[str]:
        return []

    async def embed_images(self, model_id: str, component_id: str, images: list) -> np.ndarray:
        raise NotImplementedError("not used by generations")


def test_a_generation_that_does_not_fit_is_503_and_charges_nothing(
    tmp_path, catalog, replica, out_of_memory, make_client
):
    app = create_app(Settings(home=tmp_path, secret=TEST_SECRET), catalog, ReplicaClient(replica))
    client: TestClient = make_client(app, credits=50)
    with client:
        r = client.post(
            "/v1/generations", json={"model": MODEL, "prompt": "a kiln", "n": 2, "steps": 1}
        )
        assert r.status_code == 503, r.text
        assert set(r.json()) == {"error"}
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["code"], error["type"]) == ("out_of_memory", "service_unavailable")
        assert error["message"].startswith("out of GPU memory")
        assert int(r.headers["retry-after"]) >= 1 and r.headers["x-request-id"]
        credits = client.get("/v1/credits").json()
        assert (credits["balance"], credits["held"]) == (50, 0)
        assert client.get("/v1/assets").json()["data"] == []


def test_the_error_is_mapped_when_serve_wraps_it():
    from ray.exceptions import RayTaskError

    from serving.ray.errors import core_error

    cause = OutOfGpuMemory("out of GPU memory: 1 image(s) of 1024x1024 do not fit")
    wrapped = RayTaskError("ModelDeployment.generate", "Traceback ...", cause)
    # The Ray client hands the core the replica's own error, not Ray's wrapper.
    for exc in (cause, wrapped, wrapped.as_instanceof_cause()):
        error = api_error_for(core_error(exc))
        assert (error.status, error.code) == (503, "out_of_memory")
        assert error.message == f"{cause}; retry later"
        assert error.headers["retry-after"] == "10"
