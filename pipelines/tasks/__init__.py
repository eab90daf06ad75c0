"""The pipeline tasks, one module each: its inputs (a frozen dataclass a
``GenerationParams`` holds as ``task``) and its ``TaskRunner`` (the call builder and how a
base model derives the task's pipeline). ``RUNNERS`` is the engine's dispatch table.

    params = GenerationParams.build(spec, prompt=..., task=Inpaint(image, mask, 0.8))
"""

from __future__ import annotations

from pipelines.params import TextToImage
from pipelines.task import Task
from pipelines.tasks import (
    controlnet,
    image_to_image,
    inpaint,
    instruct,
    references,
    text_to_image,
)
from pipelines.tasks.controlnet import ControlNet
from pipelines.tasks.image_to_image import ImageToImage
from pipelines.tasks.inpaint import Inpaint
from pipelines.tasks.instruct import Instruct
from pipelines.tasks.references import References
from pipelines.tasks.runner import TaskRunner

# Every task's inputs: what ``GenerationParams.task`` holds.
TaskParams = TextToImage | ImageToImage | Inpaint | Instruct | ControlNet | References

# Task -> how the engine runs it, in the order an engine lists its tasks.
RUNNERS: dict[Task, TaskRunner] = {
    module.RUNNER.task: module.RUNNER
    for module in (text_to_image, image_to_image, inpaint, instruct, controlnet, references)
}


def runner(task: Task) -> TaskRunner:
    """The runner of ``task``; loud on a miss."""
    try:
        return RUNNERS[task]
    except KeyError:
        known = ", ".join(RUNNERS)
        raise KeyError(f"unknown task {str(task)!r}; known: {known}") from None


__all__ = [
    "RUNNERS",
    "ControlNet",
    "ImageToImage",
    "Inpaint",
    "Instruct",
    "References",
    "Task",
    "TaskParams",
    "TaskRunner",
    "TextToImage",
    "runner",
]
