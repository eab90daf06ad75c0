"""``RayImageToPromptClient``: the core's ``ImageToPromptClient`` port over the CLIP's
Serve deployment (``serving.ray.image_to_prompt.deployment.ClipDeployment``). An extract
whose CLIP replica dies under it is retried once, else answered 503 ``model_unavailable``
(``serving.ray.replica_failures``), counted under the CLIP component's id."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.image_to_prompt.pipeline import ImageToPromptOutput, ImageToPromptParams
from serving.core.image_to_prompt.client import no_clip
from serving.ray.replica_failures import ReplicaFailures


class RayImageToPromptClient:
    """Through the CLIP deployment's handle (``None``: no CLIP deployed)."""

    def __init__(
        self,
        handle: Any | None,
        component_id: str | None,
        failures: ReplicaFailures | None = None,
    ):
        self.handle = handle
        self.component_id = component_id
        self.failures = failures or ReplicaFailures()

    async def extract(self, pixels: np.ndarray, params: ImageToPromptParams) -> ImageToPromptOutput:
        if self.handle is None:
            raise no_clip()
        handle = self.handle
        return await self.failures.call(
            self.component_id or "clip",
            lambda: handle.extract.remote(pixels, params),
            lambda: handle.ready.remote(),
        )
