"""``RayImageToPromptClient``: the core's ``ImageToPromptClient`` port over the CLIP's
Serve deployment (``serving.ray.image_to_prompt.deployment.ClipDeployment``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.image_to_prompt.pipeline import ImageToPromptOutput, ImageToPromptParams
from serving.core.image_to_prompt.client import no_clip
from serving.ray.errors import RAY_ERRORS, core_error


class RayImageToPromptClient:
    """Through the CLIP deployment's handle (``None``: no CLIP deployed)."""

    def __init__(self, handle: Any | None, component_id: str | None):
        self.handle = handle
        self.component_id = component_id

    async def extract(self, pixels: np.ndarray, params: ImageToPromptParams) -> ImageToPromptOutput:
        if self.handle is None:
            raise no_clip()
        try:
            return await self.handle.extract.remote(pixels, params)
        except RAY_ERRORS as exc:
            raise core_error(exc) from exc
