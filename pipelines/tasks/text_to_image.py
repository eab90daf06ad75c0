"""Text-to-image: from noise at the call's size. Its inputs (none) are
``pipelines.params.TextToImage``, the default task of ``GenerationParams``; a base
model's loaded pipeline runs it."""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.families import Family
from pipelines.params import TextToImage
from pipelines.task import Task
from pipelines.tasks.runner import TaskRunner


def call(
    tasks: Sequence[TextToImage], counts: Sequence[int], width: int, height: int, family: Family
) -> dict:
    """The call's arguments: its size."""
    return {"height": height, "width": width}


RUNNER = TaskRunner(Task.TEXT_TO_IMAGE, call)
