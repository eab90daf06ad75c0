"""How the core reaches the image-to-prompt CLIP: the ``ImageToPromptClient`` port and
an in-process client, as ``serving.core.model_client`` does for the diffusion models.

``serving.ray.image_to_prompt.client.RayImageToPromptClient`` calls the CLIP's Serve
deployment (``ClipDeployment``) through its handle; ``LocalImageToPromptClient``, here,
loads the CLIP in this process on first use (tests, tools). Either answers 503
``not_deployed`` (``no_clip``) when the catalog has no ``clip`` component.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipelines.image_to_prompt.embeddings import CACHE_SUBDIR
from pipelines.image_to_prompt.pipeline import ImageToPromptOutput, ImageToPromptParams
from serving.core.errors import KilnError, service_unavailable
from weights.catalog import ComponentKind

logger = logging.getLogger(__name__)


def no_clip() -> KilnError:
    """The 503 of image-to-prompt on a server whose catalog has no CLIP."""
    return service_unavailable(
        "image-to-prompt needs a CLIP component in the catalog ([components.<id>] with "
        'kind = "clip"); none is installed',
        code="not_deployed",
    )


class ImageToPromptClient(Protocol):
    """Runs image-to-prompt on the served CLIP."""

    component_id: str | None

    async def extract(self, pixels: np.ndarray, params: ImageToPromptParams) -> ImageToPromptOutput:
        """Prompt and scored terms for uint8 HxWx3 RGB ``pixels``."""
        ...


class LocalImageToPromptClient:
    """The catalog's first CLIP in this process, loaded on first use, one call at a time
    on one thread (as in a replica)."""

    def __init__(self, catalog: Any, home: Path, device: str = "cpu"):
        component = catalog.first_component(ComponentKind.CLIP)
        self.component = component
        self.component_id = component.id if component is not None else None
        self.cache_dir = Path(home) / CACHE_SUBDIR
        self.device = device
        self.pipeline: Any = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="local-clip")

    def _extract_sync(self, pixels: np.ndarray, params: ImageToPromptParams) -> ImageToPromptOutput:
        from PIL import Image

        from pipelines.image_to_prompt.pipeline import ImageToPrompt

        if self.pipeline is None:
            logger.info("loading CLIP %s in-process", self.component_id)
            self.pipeline = ImageToPrompt.load(
                self.component, cache_dir=self.cache_dir, device=self.device
            )
        return self.pipeline(Image.fromarray(pixels), params)

    async def extract(self, pixels: np.ndarray, params: ImageToPromptParams) -> ImageToPromptOutput:
        if self.component is None:
            raise no_clip()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._extract_sync, pixels, params)
