"""What an image-to-prompt request asks, as the core takes it: the ``image_to_prompt``
field of generations and edits (``ExtractOrder``) and ``POST /v1/image-to-prompt``
(``ImageToPromptOrder``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.image_to_prompt.pipeline import DEFAULT_TOP_K
from serving.core.image_inputs import ImageSource


@dataclass(frozen=True)
class ExtractOrder:
    """An image whose attributes (``extract``) become prompt text in a ``method``
    wording."""

    source: ImageSource
    extract: str = "everything"
    method: str = "precise"


@dataclass(frozen=True)
class ImageToPromptOrder:
    """``POST /v1/image-to-prompt``: an extract and how many terms each list keeps."""

    extract: ExtractOrder
    top_k: int = DEFAULT_TOP_K
