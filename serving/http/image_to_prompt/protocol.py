"""Wire shapes of ``POST /v1/image-to-prompt`` and of the ``image_to_prompt`` field that
generations and edits take."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pipelines.image_to_prompt.pipeline import DEFAULT_TOP_K, MAX_TOP_K
from pipelines.image_to_prompt.vocabulary import EXTRACT_TYPES, METHODS
from serving.core.image_inputs import ImageSource
from serving.core.image_to_prompt.orders import ExtractOrder, ImageToPromptOrder
from serving.core.image_to_prompt.service import ImageToPromptResult

EXTRACT_HELP = f"which attributes: {' | '.join(EXTRACT_TYPES)}"
METHOD_HELP = f"wording: {' | '.join(METHODS)} (a flowing, mood-first text | a literal list)"


class ImageToPromptField(BaseModel):
    """An image whose attributes become prompt text: base64 ``image`` or one of the
    caller's assets (``asset_id``), with the extract type and wording."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image: str | None = Field(None, description="base64 PNG/JPEG/WebP (or a data: URL)")
    asset_id: str | None = Field(None, description="one of your assets, instead of image")
    extract: str = Field("everything", description=EXTRACT_HELP)
    method: str = Field("precise", description=METHOD_HELP)

    def to_extract(self) -> ExtractOrder:
        return ExtractOrder(ImageSource(self.image, self.asset_id), self.extract, self.method)


class ImageToPromptRequest(ImageToPromptField):
    """``POST /v1/image-to-prompt``: the field's contents plus how many terms per list."""

    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="terms kept per list")

    def to_order(self) -> ImageToPromptOrder:
        """The request as the core takes it."""
        return ImageToPromptOrder(self.to_extract(), self.top_k)


class ScoredTermObject(BaseModel):
    """A vocabulary term and its CLIP probability within its list."""

    term: str
    score: float


class ImageToPromptResponse(BaseModel):
    """The prompt text and the scored terms of every list the extract drew from."""

    object: str = "image_to_prompt"
    prompt: str
    extract: str
    method: str
    terms: dict[str, list[ScoredTermObject]] = Field(description="list name -> best first")
    model: str = Field(description="the CLIP component that ranked")
    credits_charged: int
    timings: dict[str, float]

    @classmethod
    def of(cls, order: ImageToPromptOrder, result: ImageToPromptResult) -> ImageToPromptResponse:
        out = result.output
        return cls(
            prompt=out.prompt,
            extract=order.extract.extract,
            method=order.extract.method,
            terms={
                name: [ScoredTermObject(term=t.text, score=t.score) for t in terms]
                for name, terms in out.extract.terms.items()
            },
            model=result.component_id,
            credits_charged=result.credits_charged,
            timings=out.timings,
        )
