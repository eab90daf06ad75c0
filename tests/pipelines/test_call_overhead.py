"""``pipelines.call_overhead``: a pipeline answers its execution device without walking
its modules, attention's keyword check builds each processor's signature once, and the
images are the same bit for bit as diffusers' own way; a pipeline with offloading hooks
keeps asking."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

from pipelines.call_overhead import (
    diffusers_class,
    pin_execution_device,
    trim_call_overhead,
    untrim_call_overhead,
)
from pipelines.engine import Engine
from pipelines.params import GenerationParams
from pipelines.task import Task


class Counted:
    """The calls of a function, counted by the stand-in ``wrap`` makes (a plain function,
    so that as a method it binds as the real one does)."""

    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, real):  # noqa: ANN001, ANN201
        def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.calls += 1
            return real(*args, **kwargs)

        return counting


@pytest.fixture
def counted(monkeypatch) -> tuple[Counted, Counted]:  # noqa: ANN001
    """(module walks, signatures built): ``nn.Module.named_modules`` and
    ``inspect.signature`` calls, counted."""
    walks, signatures = Counted(), Counted()
    monkeypatch.setattr(torch.nn.Module, "named_modules", walks.wrap(torch.nn.Module.named_modules))
    monkeypatch.setattr(inspect, "signature", signatures.wrap(inspect.signature))
    return walks, signatures


def image(engine: Engine) -> np.ndarray:
    params = GenerationParams.build(engine.spec, prompt="a lighthouse", seed=11, steps=2)
    return engine.generate([params])[0].images[0]


def test_trimmed_calls_walk_no_modules_build_no_signatures_and_match_diffusers(engines, counted):
    engine = engines["tiny-sdxl"]
    pipe = engine.pipeline(Task.TEXT_TO_IMAGE)
    walks, signatures = counted
    # The engine's pipelines are pinned: same name, a subclass of diffusers' class.
    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert type(pipe) is not StableDiffusionXLPipeline
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"

    image(engine)  # the signatures' cache filled (if no test did before)
    walks.calls = signatures.calls = 0
    assert pipe._execution_device == torch.device("cpu") and walks.calls == 0
    trimmed = image(engine)
    trimmed_signatures = signatures.calls

    untrim_call_overhead(pipe)
    try:
        assert type(pipe) is StableDiffusionXLPipeline
        walks.calls = 0
        assert pipe._execution_device == torch.device("cpu") and walks.calls > 0
        signatures.calls = 0
        plain = image(engine)
        plain_signatures = signatures.calls
    finally:
        trim_call_overhead(pipe)
    assert type(pipe) is not StableDiffusionXLPipeline
    # Every attention layer's call built one, each step; trimmed, only the few that are
    # not attention's (the scheduler's step keywords, once a call) are built.
    counts = (plain_signatures, trimmed_signatures)
    assert plain_signatures > 20 and trimmed_signatures * 10 < plain_signatures, counts
    assert np.array_equal(trimmed, plain)


def test_derived_pipelines_are_pinned_too(engines):
    derived = engines["tiny-sdxl"].pipeline(Task.IMAGE_TO_IMAGE)
    assert isinstance(derived, StableDiffusionXLImg2ImgPipeline)
    assert type(derived) is not StableDiffusionXLImg2ImgPipeline
    assert derived._execution_device == torch.device("cpu")


def test_a_pipeline_with_offloading_hooks_keeps_asking(engines):
    base = engines["tiny-sd15"].pipeline(Task.TEXT_TO_IMAGE)
    # A pipeline of diffusers' own class over the same modules, one of them hooked.
    fresh = diffusers_class(base).from_pipe(base)
    hooked = fresh.vae
    hooked._hf_hook = object()  # what accelerate's offloading leaves on a module
    try:
        assert pin_execution_device(fresh) is False
        assert type(fresh) is diffusers_class(base)
    finally:
        del hooked._hf_hook
    assert pin_execution_device(fresh) is True
    assert type(fresh) is type(base)  # one pinned class per diffusers class
