"""Generations, the use case: ``POST /v1/generations``, batch generation lines and
OpenAI's ``POST /v1/images/generations`` (``create_openai``).

    result = await core.generations.create(tenant_id, GenerationOrder(...), request_id)
    result.images[i].asset, result.images[i].pixels, result.credits_charged

Everything is resolved and checked before credits are held (the model, the style and
its strength, the reference and pins, the image-to-prompt extract, the size, steps and
prompt lengths), then the order runs through the one paid path
(``serving.core.paid_images``) at the model's price per image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pipelines.params import GenerationParams, ParamError, StyleRef
from serving.core.assets.delivery import Keep
from serving.core.credits.charging import unit_price
from serving.core.features import require_feature
from serving.core.generations.guidance import guidance_inputs
from serving.core.generations.orders import GenerationOrder
from serving.core.generations.params import build_params, check_prompt
from serving.core.generations.pinned import check_pinned
from serving.core.generations.styling import ChosenStyle, StyleChooser, asset_kind
from serving.core.image_inputs import ImageInputs, derived_kind
from serving.core.image_to_prompt.mixing import prompt_with_extract
from serving.core.image_to_prompt.service import ImageToPrompt
from serving.core.paid_images import ImageResult, PaidImages, Price
from serving.core.pins.conditioning import Conditioning
from serving.core.pins.pinning import Pinning
from serving.core.settings import Settings
from styles.record import is_style_id
from weights.catalog import Catalog, ModelSpec

Generation = ImageResult[None]


def generation_params(
    spec: ModelSpec,
    settings: Settings,
    order: GenerationOrder,
    *,
    prompt: str | None = None,
    style: StyleRef | None = None,
    **call: Any,
) -> GenerationParams:
    """The pipeline call of ``order`` on ``spec``, resolved once (``ParamError`` names
    the bad field). ``prompt``: the prompt the order runs with where the use case changed
    it (a style's trigger words, an extract mixed in); ``style`` the resolved style;
    ``call`` the task fields a reference or pins resolved to."""
    sizing = {
        "resolution": order.resolution,
        "aspect_ratio": order.aspect_ratio,
        "size": order.size,
    }
    return build_params(
        spec,
        settings,
        order.sampling,
        prompt=order.prompt if prompt is None else prompt,
        n=order.n,
        style=style,
        **{**sizing, **call},  # a call on another model may fix the size (pinned.py)
    )


def check_features(catalog: Catalog, spec: ModelSpec, order: GenerationOrder) -> None:
    """Refuse what ``order`` asks of ``spec`` that its family does not have (a style, a
    reference of either mode, pins on FLUX): a 400 naming the field and the models that
    have it."""
    if order.style is not None:
        require_feature(catalog, spec, "styles", "style")
    if order.reference is not None:
        img2img = order.reference.mode == "img2img"
        require_feature(
            catalog, spec, "reference" if img2img else "reference_ip_adapter", "reference"
        )
    if order.pins:
        require_feature(catalog, spec, "pins", "pins")
        check_pinned(catalog, spec, order)


def check_generation(order: GenerationOrder, catalog: Catalog, settings: Settings) -> str:
    """What ``Generations.create`` refuses before reserving, tenant aside (``kiln batch``
    checks its lines so before anything runs): the model, a strength without a style, the
    prompt, the size, n, steps, guidance and scheduler. Returns the model id."""
    spec = catalog.get(order.model)
    check_features(catalog, spec, order)
    if order.style is None and order.style_strength is not None:
        raise ParamError("style_strength", "style_strength needs a style")
    prompt = order.prompt
    if prompt is None and order.image_to_prompt is None:
        raise ParamError("prompt", "give a prompt, image_to_prompt, or both")
    check_prompt(prompt, "prompt", settings.max_prompt_chars)
    # Where the use case may run without words (an extract becomes the prompt; img2img
    # from a reference takes a blank one) any text stands in for the prompt.
    img2img = order.reference is not None and order.reference.mode == "img2img"
    if order.image_to_prompt is not None or (img2img and not (prompt or "").strip()):
        prompt = "stand-in"
    generation_params(spec, settings, order, prompt=prompt)
    return spec.id


@dataclass(kw_only=True, eq=False)
class Generations:
    """Text-to-image, with styles, references, pins and image-to-prompt; built once by
    ``build_core``."""

    settings: Settings
    catalog: Catalog
    styles: StyleChooser
    inputs: ImageInputs
    conditioning: Conditioning
    pinning: Pinning
    image_to_prompt: ImageToPrompt
    paid: PaidImages

    async def create(
        self, tenant_id: str, order: GenerationOrder, request_id: str | None = None
    ) -> Generation:
        """Generate ``order.n`` images, store them as ``tenant_id``'s assets, charge them;
        ``request_id`` names the reservation in the ledger."""
        started = time.perf_counter()  # server_total counts the checks and the reservation
        spec = self.catalog.get(order.model)
        check_features(self.catalog, spec, order)
        style = None
        if order.style is not None:
            style = await self.styles.choose(tenant_id, order.style, order.style_strength, spec)
        elif order.style_strength is not None:
            raise ParamError("style_strength", "style_strength needs a style")
        guidance = await guidance_inputs(
            self.inputs, self.conditioning, self.pinning, tenant_id, spec, order
        )
        # Pins on FLUX.1 run on its Kontext sibling; the price stays the asked model's.
        runs_on = guidance.runs_on or spec
        # The user's prompt with an image's extract mixed in (free: image_to_prompt/mixing).
        prompt = await prompt_with_extract(
            self.image_to_prompt, tenant_id, order.prompt, order.image_to_prompt
        )
        params = generation_params(
            runs_on,
            self.settings,
            order,
            prompt=style.prompt(prompt) if style else prompt,
            style=style.ref if style else None,
            **guidance.call,
        )
        source = guidance.reference.source if guidance.reference else None
        keep = Keep(
            kind=derived_kind(guidance.inputs, asset_kind(spec, style)),
            style=style.record.id if style else None,
            parent_id=source.id if source is not None else None,
            terms=runs_on.terms,
        )
        price = Price(unit_price(spec, params.resolution), params.n)
        return await self.paid.images(
            tenant_id, self.paid.generation(params, price, keep, started), request_id
        )

    async def create_openai(
        self, tenant_id: str, order: GenerationOrder, request_id: str | None = None
    ) -> Generation:
        """OpenAI's generation: ``order.model`` is a model id, a style id (the style on its
        own model) or None (the catalog's first model); the size is ``order.size``; no
        references, pins or extracts."""
        started = time.perf_counter()
        model = order.model or self.catalog.ids()[0]
        style: ChosenStyle | None = None
        if model not in self.catalog and is_style_id(model):
            # ``model`` names a style: it runs on the style's base model.
            record = await self.styles.find(tenant_id, model)
            spec = self.catalog.get(record.base_model)
            style = self.styles.fit(record, order.style_strength, spec)
        else:
            spec = self.catalog.get(model)
            if order.style_strength is not None:
                raise ParamError("style_strength", "style_strength needs model to name a style")
        prompt = order.prompt or ""
        params = generation_params(
            spec,
            self.settings,
            order,
            prompt=style.prompt(prompt) if style else prompt,
            style=style.ref if style else None,
        )
        keep = Keep(asset_kind(spec, style), style.record.id if style else None, terms=spec.terms)
        price = Price(unit_price(spec, params.resolution), params.n)
        return await self.paid.images(
            tenant_id, self.paid.generation(params, price, keep, started), request_id
        )
