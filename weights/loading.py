"""Load a catalog model as a diffusers pipeline, from local files only.

Two sources are supported: a diffusers folder (``from_pretrained``) and a single-file
``.safetensors`` checkpoint: a whole SD pipeline (``weights.single_file``) or a FLUX
transformer with the rest from a diffusers folder (``weights.transformer_file``); the
family says which (``Family.single_file``). Pickle formats are refused:
loading them runs arbitrary code (``weights.checks``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from weights.catalog import ComponentSpec, ModelSpec
from weights.checks import ModelLoadError, refuse_pickle, refuse_pickle_folder

if TYPE_CHECKING:
    from weights.single_file import SingleFileLayout
    from weights.transformer_file import TransformerFileLayout

logger = logging.getLogger(__name__)


def load_controlnet(
    component: ComponentSpec, device: Any, dtype: Any, model_class: str = "ControlNetModel"
) -> Any:
    """A ControlNet component (a diffusers folder of safetensors) on ``device``, as the
    diffusers class ``model_class`` (the model family's: ``FluxControlNetModel``)."""
    import diffusers

    source = component.source
    refuse_pickle(source)
    if not source.is_dir():
        raise ModelLoadError(f"ControlNet {component.id!r}: {source} is not a diffusers folder")
    refuse_pickle_folder(source)
    quiet_progress_bars()
    model = getattr(diffusers, model_class).from_pretrained(
        source, torch_dtype=dtype, local_files_only=True, use_safetensors=True
    )
    return model.to(device)


def load_tiny_autoencoder(component: ComponentSpec, device: Any, dtype: Any) -> Any:
    """A ``preview_decoder`` component (a diffusers ``AutoencoderTiny`` folder of
    safetensors: TAESD, TAESDXL, TAEF1) on ``device``, for step previews."""
    from diffusers import AutoencoderTiny

    source = component.source
    refuse_pickle(source)
    if not source.is_dir():
        raise ModelLoadError(
            f"preview decoder {component.id!r}: {source} is not a diffusers folder"
        )
    refuse_pickle_folder(source)
    quiet_progress_bars()
    model = AutoencoderTiny.from_pretrained(
        source, torch_dtype=dtype, local_files_only=True, use_safetensors=True
    )
    return model.to(device).eval()


def load_pipeline(
    spec: ModelSpec,
    cls: Any,
    layout: SingleFileLayout | TransformerFileLayout | None,
    device: str,
    dtype: Any,
) -> Any:
    """The model as the diffusers pipeline class ``cls`` on ``device`` in ``dtype``; a
    single file is read in ``layout``; never asks a hub. Which class and layout is the
    family's to say (``pipelines.families.load_pipeline``)."""
    source = spec.source
    refuse_pickle(source)
    if not source.exists():
        raise ModelLoadError(f"model {spec.id!r}: {source} does not exist")
    quiet_progress_bars()
    if source.is_dir():
        refuse_pickle_folder(source)
        logger.info("loading %s from diffusers folder %s", spec.id, source)
        pipe = cls.from_pretrained(source, dtype=dtype, local_files_only=True, use_safetensors=True)
    elif source.suffix.lower() == ".safetensors":
        from weights.single_file import SingleFileLayout, load_single_file
        from weights.transformer_file import TransformerFileLayout, load_transformer_file

        if isinstance(layout, TransformerFileLayout):
            pipe = load_transformer_file(spec, cls, layout, dtype)
        elif isinstance(layout, SingleFileLayout):
            pipe = load_single_file(spec, cls, layout, dtype)
        else:
            raise ModelLoadError(
                f"model {spec.id!r}: family {spec.family} loads diffusers folders only, "
                f"not the single file {source.name}"
            )
    else:
        raise ModelLoadError(
            f"model {spec.id!r}: {source.name} is neither a diffusers folder "
            "nor a .safetensors file"
        )
    # diffusers turns SDXL's own invisible watermark on whenever invisible-watermark is
    # installed and the folder does not say otherwise (a tiny model's never does); Kiln
    # applies its own (pipelines/watermark.py) so it must be the only one.
    if getattr(pipe, "watermark", None) is not None:
        pipe.watermark = None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def quiet_progress_bars() -> None:
    """Loading progress bars are noise in a server log."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
