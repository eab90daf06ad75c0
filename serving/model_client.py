"""How the HTTP side reaches loaded models: one small interface, two implementations.

``RayModelClient`` calls each model's Serve deployment through its handle (the server).
``LocalModelClient`` runs engines in this process (tools, benchmarks and tests that need
no Ray); it loads an engine only when a request first reaches it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from pipelines.output import GenerationOutput
from pipelines.params import GenerationParams
from serving.errors import api_error_for, service_unavailable

logger = logging.getLogger(__name__)


class ModelClient(Protocol):
    """Runs resolved generation parameters on the model they name."""

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        """Images for one request; raises domain errors (see ``serving.errors``)."""
        ...


class RayModelClient:
    """Generation through the models' Ray Serve deployment handles, keyed by model id."""

    def __init__(self, handles: Mapping[str, Any]):
        self.handles = dict(handles)

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        handle = self.handles.get(params.model)
        if handle is None:
            # In the catalog but not deployed (e.g. a kind without a deployment yet).
            raise service_unavailable(f"model {params.model!r} is not deployed on this server")
        try:
            return await handle.generate.remote(params)
        except (BackPressureError, DeploymentUnavailableError) as exc:
            # Converted here: Ray installs its own plain-text handler for these on the app.
            raise api_error_for(exc) from exc


class LocalModelClient:
    """Engines in this process, one per model, each running one pipeline call at a time."""

    def __init__(self, catalog: Any, device: str | None = None):
        self.catalog = catalog
        self.device = device
        self._engines: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def engine(self, model_id: str) -> Any:
        """The loaded engine of ``model_id`` (loading it on first use)."""
        from pipelines.engine import Engine

        with self._guard:
            lock = self._locks.setdefault(model_id, threading.Lock())
        with lock:
            if model_id not in self._engines:
                logger.info("loading %s in-process", model_id)
                self._engines[model_id] = Engine.load(
                    self.catalog.get(model_id), device=self.device
                )
            return self._engines[model_id]

    def generate_sync(self, params: GenerationParams) -> GenerationOutput:
        """Blocking generation; one call at a time per model."""
        engine = self.engine(params.model)
        with self._locks[params.model]:
            return engine.generate([params])[0]

    async def generate(self, params: GenerationParams) -> GenerationOutput:
        return await asyncio.to_thread(self.generate_sync, params)
