"""LoRA styles on a loaded pipeline: named adapters, an LRU of them, selection per call.

    adapters = StyleAdapters(pipe, capacity=8)
    adapters.activate(StyleRef("sty_a", "/k/styles/…safetensors", 0.8))  # loads if needed
    ...pipeline call...
    adapters.activate(None)                                            # base model again

A style is loaded once (``load_lora_weights(adapter_name=style id)``) and then switched by
adapter *selection* (``set_adapters`` with the strength as the adapter weight): the base
model is never reloaded and a switch moves no weights. ``activate`` runs at the start of
every pipeline call, so the previous call's style never leaks into the next. Past
``capacity`` loaded styles, the least recently used one is deleted (``delete_adapters``);
a style evicted and asked for again is loaded again from its file.

Blocking torch work: call from the engine's thread, one call at a time.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from pipelines.params import StyleRef

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY = 8


class StyleLoadError(ValueError):
    """A style's LoRA file that this pipeline cannot take (missing, or not for it)."""


class StyleAdapters:
    """The LoRA adapters loaded on one pipeline, least recently used first."""

    def __init__(self, pipe: Any, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.pipe = pipe
        self.capacity = capacity
        self._loaded: OrderedDict[str, str] = OrderedDict()  # style id -> file path
        self._active: tuple[str, float] | None = None
        self._disabled = False  # disable_lora() was the last word: enable before selecting

    @property
    def loaded(self) -> list[str]:
        """Loaded style ids, least recently used first."""
        return list(self._loaded)

    def load(self, style: StyleRef) -> bool:
        """Load ``style``'s adapter unless it is loaded; True when this call loaded it."""
        if style.id in self._loaded:
            self._loaded.move_to_end(style.id)
            return False
        while len(self._loaded) >= self.capacity:
            self.unload(next(iter(self._loaded)))
        started = time.perf_counter()
        try:
            self.pipe.load_lora_weights(style.path, adapter_name=style.id)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            # A half-registered adapter must not linger under this name.
            self._forget(style.id)
            raise StyleLoadError(f"style {style.id!r}: cannot load {style.path}: {exc}") from exc
        self._loaded[style.id] = style.path
        self._active = None  # loading may have made the new adapter active
        logger.info("style %s loaded in %.3fs", style.id, time.perf_counter() - started)
        return True

    def unload(self, style_id: str) -> None:
        """Delete ``style_id``'s adapter (no-op when it is not loaded)."""
        if self._loaded.pop(style_id, None) is None:
            return
        self._forget(style_id)
        if self._active is not None and self._active[0] == style_id:
            self._active = None
        logger.info("style %s unloaded", style_id)

    def activate(self, style: StyleRef | None) -> None:
        """Make ``style`` (at its strength) the only active adapter; None: none at all."""
        if style is None:
            if self._loaded and self._active != ("", 0.0):
                self.pipe.disable_lora()
                self._disabled = True
            self._active = ("", 0.0)
            return
        self.load(style)
        wanted = (style.id, style.strength)
        if self._active == wanted:
            return
        if self._disabled:
            self.pipe.enable_lora()
            self._disabled = False
        self.pipe.set_adapters([style.id], adapter_weights=[style.strength])
        self._active = wanted

    def _forget(self, style_id: str) -> None:
        try:
            self.pipe.delete_adapters(style_id)
        except (ValueError, KeyError, AttributeError) as exc:
            logger.debug("no adapter %s to delete: %s", style_id, exc)
