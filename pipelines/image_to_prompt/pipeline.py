"""Image-to-prompt on open_clip: an image in, prompt text and scored terms out.

    i2p = ImageToPrompt.load(catalog.component("tiny-clip"), cache_dir=home / CACHE_SUBDIR)
    out = i2p(image, ImageToPromptParams(extract="outfit", method="precise"))
    out.prompt, out.extract.terms

CLIP alone ranks the vocabulary (no caption model). The vocabulary's text embeddings are
computed once per instance (one per replica) and cached on disk per (model sha,
vocabulary sha); ``embedding_source`` says where the last call's came from.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.image_to_prompt.clip_model import ClipModel
from pipelines.image_to_prompt.embeddings import text_embeddings
from pipelines.image_to_prompt.ranking import Extract, rank
from pipelines.image_to_prompt.vocabulary import (
    Vocabulary,
    check_extract,
    check_method,
    shipped_vocabulary,
)
from pipelines.image_to_prompt.wording import mix
from pipelines.params import ParamError
from weights.catalog import ComponentSpec

DEFAULT_TOP_K = 3
MAX_TOP_K = 10


@dataclass(frozen=True)
class ImageToPromptParams:
    """One extraction: which attributes (``extract``), which wording (``method``), how
    many terms per list, and the user's prompt to mix the extract into (None: none)."""

    extract: str = "everything"
    method: str = "precise"
    top_k: int = DEFAULT_TOP_K
    prompt: str | None = None

    def __post_init__(self) -> None:
        check_extract(self.extract)
        check_method(self.method)
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise ParamError("top_k", f"top_k must be between 1 and {MAX_TOP_K}")


@dataclass(frozen=True)
class ImageToPromptOutput:
    """The prompt (mixed with the user's when one was given) and the scored terms."""

    prompt: str
    extract: Extract
    timings: dict[str, float] = field(default_factory=dict)


class ImageToPrompt:
    """A loaded CLIP and a vocabulary; call it with an image and params. Thread-safe."""

    def __init__(
        self, clip: ClipModel, vocabulary: Vocabulary | None = None, cache_dir: Path | None = None
    ):
        self.clip = clip
        self.vocabulary = vocabulary or shipped_vocabulary()
        self.cache_dir = cache_dir
        self.embedding_source: str | None = None  # "computed" | "disk" | "memory"
        self._embeddings: dict[str, Any] | None = None
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        component: ComponentSpec,
        *,
        cache_dir: Path | None = None,
        device: str | None = None,
        vocabulary: Vocabulary | None = None,
    ) -> ImageToPrompt:
        """Load the CLIP ``component`` on ``device``; embeddings wait for the first call."""
        return cls(ClipModel.load(component, device), vocabulary, cache_dir)

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Rank another vocabulary from now on (its embeddings come from its own cache)."""
        with self._lock:
            self.vocabulary = vocabulary
            self._embeddings = None

    def embeddings(self) -> dict[str, Any]:
        """The vocabulary's text embeddings: memory, else the disk cache, else computed."""
        with self._lock:
            if self._embeddings is not None:
                self.embedding_source = "memory"
                return self._embeddings
            self._embeddings, self.embedding_source = text_embeddings(
                self.clip, self.vocabulary, self.cache_dir
            )
            return self._embeddings

    def __call__(self, image: Any, params: ImageToPromptParams) -> ImageToPromptOutput:
        """Rank the vocabulary for one PIL ``image`` and word the result."""
        t0 = time.perf_counter()
        embeddings = self.embeddings()
        t1 = time.perf_counter()
        image_embedding = self.clip.encode_images([image])[0]
        extract = rank(
            image_embedding,
            embeddings,
            self.vocabulary,
            params.extract,
            params.top_k,
            self.clip.logit_scale,
        )
        prompt = mix(params.prompt, extract, self.vocabulary, params.method)
        timings = {"text_embeddings": t1 - t0, "rank": time.perf_counter() - t1}
        return ImageToPromptOutput(prompt, extract, timings)
