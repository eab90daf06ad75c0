"""A model replica SIGKILLed while requests are in flight on it (issue 25), on the session's
live server: no 500; each request either succeeded with the pixels of an undisturbed run
at its seed (retried on the replacement replica) or answered 503 ``model_unavailable``
with ``retry-after``; every tenant's ledger balances and nothing stays held; the next
request is served; the failure is counted in ``/metrics``.

The calls are 200 steps (seconds on the tiny model), and the kill waits until the replica
process burns CPU (its pipeline call runs), so it lands mid-call rather than racing a
fast one. The replica is found among the server's own descendant processes
(``benchmarks/_replicas.py``, shared with ``benchmarks/replica_kill_load.py``).
"""

from __future__ import annotations

import base64
import importlib.util
import io
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_accounts import create_tenant
from PIL import Image

pytestmark = pytest.mark.slow

_REPLICAS = Path(__file__).resolve().parents[2] / "benchmarks" / "_replicas.py"
_spec = importlib.util.spec_from_file_location("kiln_bench_replicas", _REPLICAS)
replicas = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(replicas)

MODEL = "tiny-sd15"
# A long call, so the kill lands inside it; 128 px, the model's smallest size.
BODY = {"model": MODEL, "prompt": "a kiln at dusk, long exposure", "seed": 25, "steps": 200}
CREDITS = 50
# Batched beside another request, an image may differ from its run alone by this much
# (tests/pipelines/test_text_to_image.py); alone, it is the same bytes.
BATCH_TOLERANCE = 2


def pixels_of(answer: dict) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(answer["data"][0]["b64_json"]))) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def ledger(client: httpx.Client) -> dict:
    """The tenant's balance, held credits and every entry, once nothing is held (a
    request's server side may still be unwinding when its client has its answer)."""
    deadline = time.monotonic() + 30
    while True:
        credits = client.get("/v1/credits", params={"limit": 1000}).json()
        if credits["held"] == 0 or time.monotonic() > deadline:
            return credits
        time.sleep(0.2)


@pytest.fixture(scope="module")
def studios(server):
    clients = []
    for name in ("kill studio a", "kill studio b"):
        tenant = create_tenant(server.url, name, CREDITS)
        clients.append(httpx.Client(base_url=server.url, timeout=300, headers=tenant.headers))
    yield clients
    for client in clients:
        client.close()


def test_a_replica_killed_mid_call_is_retried_or_503_never_500(server, studios, admin_http):
    first, second = studios
    undisturbed = first.post("/v1/generations", json=BODY)
    assert undisturbed.status_code == 200, undisturbed.text
    reference = pixels_of(undisturbed.json())

    replica = replicas.model_replica(server.process.pid, MODEL)
    with ThreadPoolExecutor(2) as pool:
        in_flight = [pool.submit(client.post, "/v1/generations", json=BODY) for client in studios]
        replicas.wait_busy(replica)  # the first call runs on it now
        assert not any(future.done() for future in in_flight)
        replica.send_signal(signal.SIGKILL)
        answers = [future.result() for future in in_flight]

    for answer in answers:
        assert answer.status_code in (200, 503), answer.text
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "model_unavailable"
            assert int(answer.headers["retry-after"]) >= 1
        else:
            diff = np.abs(pixels_of(answer.json()) - reference).max()
            assert diff <= BATCH_TOLERANCE, f"retried image differs by {diff}"

    delivered = [1 + (answers[0].status_code == 200), int(answers[1].status_code == 200)]
    for client, images in zip(studios, delivered, strict=True):
        credits = ledger(client)
        assert credits["held"] == 0
        assert sum(entry["amount"] for entry in credits["entries"]) == credits["balance"]
        assert sum(entry["held"] for entry in credits["entries"]) == 0
        assert CREDITS - credits["balance"] == images  # one credit an image at 128 px

    # The next request is served (a 503 only while the replacement still loads).
    deadline = time.monotonic() + 60
    while (after := second.post("/v1/generations", json={**BODY, "steps": 2})).status_code == 503:
        assert time.monotonic() < deadline, after.text
        time.sleep(float(after.headers["retry-after"]))
    assert after.status_code == 200, after.text

    metrics = admin_http.get("/metrics").text
    assert f'kiln_model_replica_failures_total{{model="{MODEL}"}} 1.0' in metrics
    assert "kiln_model_replica_failed_requests_total" in metrics
    generation_500s = [
        line
        for line in metrics.splitlines()
        if line.startswith("kiln_http_requests_total")
        and 'route="/v1/generations"' in line
        and 'status="500"' in line
    ]
    assert not generation_500s
    log = server.log.read_text(errors="replace")
    assert f"model {MODEL}: replica" in log and "died under" in log
