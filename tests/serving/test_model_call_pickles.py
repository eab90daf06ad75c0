"""A model call travels as plain pickles (``serving.ray.model_client.by_value``): the
handle asks Serve for them, and everything a call carries comes back equal through
``pickle`` alone, which cannot write a lambda or a class made at run time: the params of
every task, with a style and IP-Adapter sources; an output; a step event; the errors a
replica raises (a ``ParamError`` keeps its field, so it is still a 400)."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np

from pipelines.oom import OutOfGpuMemory
from pipelines.output import GenerationOutput
from pipelines.param_error import ParamError
from pipelines.params import (
    AdapterConditioning,
    AdapterImage,
    ControlRef,
    GenerationParams,
    ImageData,
    StyleRef,
)
from pipelines.progress import StepEvent
from pipelines.tasks.controlnet import ControlNet
from pipelines.tasks.image_to_image import ImageToImage
from pipelines.tasks.inpaint import Inpaint
from pipelines.tasks.instruct import Instruct
from pipelines.tasks.references import References
from serving.ray.model_client import by_value


class RecordsOptions:
    """A Serve handle's ``options``, recorded."""

    def __init__(self) -> None:
        self.asked: dict[str, Any] = {}

    def options(self, **options: Any) -> RecordsOptions:
        self.asked = options
        return self


def plain_round_trip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def test_model_calls_ask_for_plain_pickles_both_ways():
    handle = by_value(RecordsOptions())
    assert handle.asked == {
        "_by_reference": False,
        "request_serialization": "pickle",
        "response_serialization": "pickle",
    }


def test_everything_a_model_call_carries_survives_plain_pickle(catalog):
    base = GenerationParams.build(
        catalog.get("tiny-sd15"),
        prompt="a kiln at dusk",
        seed=7,
        steps=2,
        style=StyleRef("sty_1", "/styles/sty_1.safetensors", 0.8),
    )
    rng = np.random.default_rng(3)
    size = (base.height, base.width)
    image = ImageData(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    mask = ImageData(rng.integers(0, 2, size, dtype=np.uint8) * 255)
    adapter = AdapterConditioning(
        "tiny-ip-adapter", (AdapterImage("pin_1", rng.random((1, 4), dtype=np.float32), 0.6),)
    )
    tasks = [
        ImageToImage(image, 0.6),
        Inpaint(image, mask, 0.9),
        Instruct(image, 1.5),
        References((image, image)),
        ControlNet(ControlRef("tiny-controlnet", image, 0.7)),
    ]
    for params in [base, dataclasses.replace(base, adapter=adapter)] + [
        dataclasses.replace(base, task=task) for task in tasks
    ]:
        again = plain_round_trip(params)
        assert again == params and again.batch_key == params.batch_key
    pixels = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    output = plain_round_trip(GenerationOutput(list(pixels), (1, 2), {"total": 0.5}))
    assert np.array_equal(np.stack(output.images), pixels) and output.seeds == (1, 2)
    event = StepEvent(0, 1, 4, previews=[b"RIFF"])
    assert plain_round_trip(event) == event
    refused = plain_round_trip(ParamError("prompt", "too long"))
    assert (type(refused), refused.param, str(refused)) == (ParamError, "prompt", "too long")
    assert isinstance(plain_round_trip(OutOfGpuMemory("no room")), OutOfGpuMemory)
