"""ControlNet: text-to-image under a ControlNet's structure guidance (the agentic
composition step). A base model derives one sibling pipeline per ControlNet component,
each ControlNet loaded once, on first use, as its family's ControlNet class (SD's
``ControlNetModel``, FLUX.1's ``FluxControlNetModel``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pipelines.families import Family
from pipelines.loaded_model import LoadedModel
from pipelines.params import ControlRef, ParamError
from pipelines.task import Task
from pipelines.tasks.runner import TaskRunner, per_image
from weights.catalog import ComponentKind


@dataclass(frozen=True)
class ControlNet:
    """The ControlNet component, its control image at the call's size and its scale."""

    control: ControlRef

    name: ClassVar[Task] = Task.CONTROLNET
    prompt_required: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.control is None:
            raise ParamError("control", "task controlnet needs a control image")

    @property
    def input_size(self) -> None:
        # The control image follows the call's size, not the other way round.
        return None

    @property
    def variant(self) -> str:
        return self.control.component

    @property
    def denoise_strength(self) -> None:
        return None

    @property
    def batch_key(self) -> tuple:
        control = self.control
        return (control.component, control.scale, control.image.digest)

    def check_size(self, width: int, height: int) -> None:
        return None

    def recorded(self) -> dict[str, Any]:
        # An asset of a ControlNet call has always recorded strength 1 (nothing is cut).
        return {"strength": 1.0}


def call(
    tasks: Sequence[ControlNet], counts: Sequence[int], width: int, height: int, family: Family
) -> dict:
    """The call's arguments: one control image per generated image (by the keyword the
    family's ControlNet pipeline takes it: ``Family.control_image_arg``), the size and the
    shared conditioning scale."""
    return {
        family.control_image_arg: per_image([t.control.image for t in tasks], counts),
        "height": height,
        "width": width,
        "controlnet_conditioning_scale": tasks[0].control.scale,
    }


def derive(model: LoadedModel, base: Any, variant: str | None) -> Any:
    """The family's ControlNet pipeline with the ControlNet ``variant`` (a component id of
    ``model``) loaded on the base model's device and dtype."""
    from weights.loading import load_controlnet

    if variant not in model.components:
        known = ", ".join(c.id for c in model.components_of(ComponentKind.CONTROLNET)) or "none"
        raise KeyError(f"no ControlNet {variant!r} for {model.spec.id!r}; known: {known}")
    dtype = getattr(model.pipe, model.family.denoiser).dtype
    component = model.components[variant]
    controlnet = load_controlnet(component, model.device, dtype, model.family.controlnet_model)
    return model.family.pipeline_class(Task.CONTROLNET).from_pipe(base, controlnet=controlnet)


RUNNER = TaskRunner(Task.CONTROLNET, call, derive, needs=ComponentKind.CONTROLNET)
