"""What a pipeline call does: the ``Task`` enum. Its own module because both the
parameter objects (``pipelines.params``) and the model families (``pipelines.families``,
whose tables are keyed by task) need it, and the parameters ask the families."""

from __future__ import annotations

from enum import StrEnum


class Task(StrEnum):
    """What a pipeline call does. A ``StrEnum``: asset rows, logs and traces keep the same
    text as before.

    ``text_to_image`` from noise; ``image_to_image`` from an init image at a strength
    (reference images, recreate without a mask); ``inpaint`` inside a mask (replace,
    recreate, erase); ``instruct`` an instruction edit on an instruct model;
    ``controlnet`` text-to-image under a ControlNet's structure guidance; ``references``
    text-to-image conditioned on reference pictures (pins on FLUX.2 [klein]).
    """

    TEXT_TO_IMAGE = "text_to_image"
    IMAGE_TO_IMAGE = "image_to_image"
    INPAINT = "inpaint"
    INSTRUCT = "instruct"
    CONTROLNET = "controlnet"
    REFERENCES = "references"
