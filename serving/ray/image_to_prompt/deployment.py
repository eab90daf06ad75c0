"""The Ray Serve deployment of the image-to-prompt CLIP: one per app, ``ImageToPrompt``.

It loads the catalog's first ``clip`` component once per replica, on CUDA when
``KILN_CLIP_GPUS`` gives it a GPU share and on CPU otherwise (the default: CLIP is small
beside a diffusion model, and a share taken from a one-GPU machine could not be placed
next to a model holding the whole card). The vocabulary's text embeddings are computed
(or read from ``KILN_HOME/cache/image_to_prompt``) once per replica, at start-up.
Calls run on the replica's one engine thread, off the event loop.

Torch and open_clip are imported only in the constructor, never at module import.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve

from pipelines.image_to_prompt.pipeline import ImageToPromptOutput, ImageToPromptParams
from serving.core.logs import configure_replica_logging
from serving.core.settings import Settings
from weights.catalog import ComponentSpec

logger = logging.getLogger(__name__)

CLIP_DEPLOYMENT = "ImageToPrompt"


def clip_deployment_options(settings: Settings) -> dict[str, Any]:
    """Serve options of the CLIP deployment, from settings."""
    return {
        "name": CLIP_DEPLOYMENT,
        "ray_actor_options": {"num_cpus": settings.replica_cpus, "num_gpus": settings.clip_gpus},
        "max_ongoing_requests": 16,
        "max_queued_requests": settings.max_queued,
        "health_check_timeout_s": 120,
    }


@serve.deployment(ray_actor_options={"num_cpus": 0.5, "num_gpus": 0})
class ClipDeployment:
    """A replica holding one loaded ``ImageToPrompt``."""

    def __init__(self, settings: Settings, component: ComponentSpec):
        os.environ["HF_HUB_OFFLINE"] = "1"
        configure_replica_logging()
        import torch

        from pipelines.image_to_prompt.embeddings import CACHE_SUBDIR
        from pipelines.image_to_prompt.pipeline import ImageToPrompt

        torch.set_num_threads(settings.effective_torch_threads())
        self.component = component
        self.pipeline = ImageToPrompt.load(
            component, cache_dir=settings.home / CACHE_SUBDIR, device=settings.clip_device
        )
        self.pipeline.embeddings()  # once per replica, before the first request
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="clip")
        logger.info("CLIP %s ready on %s", component.id, settings.clip_device)

    async def extract(self, pixels: np.ndarray, params: ImageToPromptParams) -> ImageToPromptOutput:
        """Image-to-prompt of uint8 HxWx3 RGB ``pixels``."""
        from PIL import Image

        loop = asyncio.get_running_loop()
        image = Image.fromarray(pixels)
        return await loop.run_in_executor(self._executor, self.pipeline, image, params)

    async def ready(self) -> str:
        return self.component.id
