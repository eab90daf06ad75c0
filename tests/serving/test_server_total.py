"""A native generation's and edit's ``timings.server_total`` counts from the start of the
use case (``Generations.create``, ``Edits.create``): the request's checks, the input's
decoding and the reservation are in it, where the benchmark's parts
(benchmarks/serving_overhead.py) read them as the paid path's, not the HTTP front's."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from edit_samples import photo, png_b64
from fastapi.testclient import TestClient

from serving.core.edits import service as edits_service
from serving.core.generations import service as generations_service

STEP_S = 0.25


def slowed(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    """``module.name`` (a check the use case runs before the paid path) taking STEP_S."""
    real: Callable[..., Any] = getattr(module, name)

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(STEP_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)


def before_the_model_step(timings: dict[str, float]) -> float:
    return timings["server_total"] - timings["generate"] - timings["deliver"]


def test_a_generations_server_total_counts_its_checks(
    alice: TestClient, monkeypatch: pytest.MonkeyPatch
):
    slowed(monkeypatch, generations_service, "check_features")
    body = {"model": "tiny-sd15", "prompt": "a lighthouse", "seed": 1}
    response = alice.post("/v1/generations", json=body)
    assert response.status_code == 200, response.text
    assert before_the_model_step(response.json()["timings"]) >= STEP_S


def test_an_edits_server_total_counts_its_checks(
    alice: TestClient, monkeypatch: pytest.MonkeyPatch
):
    slowed(monkeypatch, edits_service, "choose_model")
    body = {"tool": "recreate", "image": png_b64(photo()), "prompt": "a field", "seed": 1}
    response = alice.post("/v1/edits", json={"model": "tiny-sd15", **body})
    assert response.status_code == 200, response.text
    assert before_the_model_step(response.json()["timings"]) >= STEP_S
