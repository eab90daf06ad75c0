"""Scale to zero on a live local Ray Serve: a model deployment with ``min_replicas = 0``
(options built by the app's own ``model_deployment_options`` from settings) starts with no
replica; the first request through ``RayModelClient`` answers 503 ``model_loading`` and
wakes it; once loaded, requests succeed; its readiness lapses and is probed again.

Not waited for here: the autoscaler removing the idle replica (Serve averages load over
a 30 s look-back window, so it takes 30-40 s on top of the ~20-40 s load on 2 cores).
What the client does then is the lapsed-readiness path above, where the probe finds no
replica, starts one and the request answers 503 as the first one did.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pipelines.params import GenerationParams
from serving.core.errors import KilnError
from serving.core.settings import Settings
from serving.ray.app import model_deployment_options
from serving.ray.model_client import RayModelClient
from serving.ray.model_deployment import ModelDeployment

MODEL = "tiny-sd15"
LOAD_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def serve_instance():
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(proxy_location="Disabled")
    try:
        yield serve
    finally:
        serve.shutdown()
        ray.shutdown()


def running_replicas(serve, app: str, deployment: str) -> int:
    status = serve.status().applications[app].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


@pytest.mark.slow
def test_a_model_scaled_to_zero_answers_503_while_it_loads_on_first_use(
    serve_instance, catalog, tmp_path
):
    serve = serve_instance
    spec = catalog.get(MODEL)
    settings = Settings(
        home=tmp_path, device="cpu", torch_threads=1, model_min_replicas=0, model_idle_s=2
    )
    options = model_deployment_options(settings, cluster_gpus=0, spec=spec)
    assert options["autoscaling_config"]["initial_replicas"] == 0
    app = ModelDeployment.options(name=MODEL, **options).bind(settings, spec)
    handle = serve.run(app, name="zero", route_prefix=None)
    assert running_replicas(serve, "zero", MODEL) == 0  # nothing loaded before first use

    client = RayModelClient({MODEL: handle}, on_demand={MODEL}, ready_ttl_s=1.0)
    params = GenerationParams.build(spec, prompt="a kiln", seed=7, steps=1)
    assert client.unready() == []  # a health check neither waits for it nor wakes it

    async def scenario() -> None:
        with pytest.raises(KilnError) as loading:
            await client.generate(params)
        assert (loading.value.status, loading.value.code) == (503, "model_loading")
        assert loading.value.headers["retry-after"]

        async def generated():
            deadline = time.monotonic() + LOAD_TIMEOUT_S
            while True:
                try:
                    return await client.generate(params)
                except KilnError as exc:
                    assert exc.code == "model_loading"
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(1.0)

        output = await generated()
        assert output.seeds == (7,) and output.images[0].shape == (128, 128, 3)
        assert running_replicas(serve, "zero", MODEL) == 1

        # Readiness lapses after ready_ttl_s without an answer (the replica may have been
        # removed meanwhile): the next request probes again, and a running replica
        # answers the probe at once, so the request goes through.
        await asyncio.sleep(1.2)
        assert not client.is_ready(MODEL)
        assert (await client.generate(params)).seeds == (7,)
        assert client.is_ready(MODEL)

    asyncio.run(scenario())
