"""Load a catalog model as a diffusers pipeline, from local files only.

Two sources are supported: a diffusers folder (``from_pretrained``) and a single-file
``.safetensors`` checkpoint (see ``weights.single_file``). Pickle formats are refused:
loading them runs arbitrary code (``weights.checks``).
"""

from __future__ import annotations

import logging
from typing import Any

from weights.catalog import ComponentSpec, ModelFamily, ModelKind, ModelSpec
from weights.checks import ModelLoadError, refuse_pickle, refuse_pickle_folder

logger = logging.getLogger(__name__)


# Instruction-edit pipelines (catalog kind ``instruct``), by family.
INSTRUCT_PIPELINES = {
    ModelFamily.SD15: "StableDiffusionInstructPix2PixPipeline",
    ModelFamily.SDXL: "StableDiffusionXLInstructPix2PixPipeline",
}


# Dedicated inpainting checkpoints (catalog kind ``inpaint``), by family.
INPAINT_PIPELINES = {
    ModelFamily.SD15: "StableDiffusionInpaintPipeline",
    ModelFamily.SDXL: "StableDiffusionXLInpaintPipeline",
}


def pipeline_class(spec: ModelSpec) -> Any:
    """The diffusers class a model loads as: its family's text-to-image pipeline, or the
    family's instruct or inpaint pipeline for those kinds."""
    import diffusers

    if spec.kind == ModelKind.INSTRUCT:
        return getattr(diffusers, INSTRUCT_PIPELINES[spec.family])
    if spec.kind == ModelKind.INPAINT:
        return getattr(diffusers, INPAINT_PIPELINES[spec.family])
    return getattr(diffusers, spec.family_spec.pipeline_class)


def load_controlnet(component: ComponentSpec, device: Any, dtype: Any) -> Any:
    """A ControlNet component (a diffusers folder of safetensors) on ``device``."""
    from diffusers import ControlNetModel

    source = component.source
    refuse_pickle(source)
    if not source.is_dir():
        raise ModelLoadError(f"ControlNet {component.id!r}: {source} is not a diffusers folder")
    refuse_pickle_folder(source)
    quiet_progress_bars()
    model = ControlNetModel.from_pretrained(
        source, torch_dtype=dtype, local_files_only=True, use_safetensors=True
    )
    return model.to(device)


def load_pipeline(spec: ModelSpec, device: str, dtype: Any) -> Any:
    """The model's text-to-image pipeline on ``device`` in ``dtype``; never asks a hub."""
    source = spec.source
    refuse_pickle(source)
    if not source.exists():
        raise ModelLoadError(f"model {spec.id!r}: {source} does not exist")
    cls = pipeline_class(spec)
    quiet_progress_bars()
    if source.is_dir():
        refuse_pickle_folder(source)
        logger.info("loading %s from diffusers folder %s", spec.id, source)
        pipe = cls.from_pretrained(source, dtype=dtype, local_files_only=True, use_safetensors=True)
    elif source.suffix.lower() == ".safetensors":
        from weights.single_file import load_single_file

        pipe = load_single_file(spec, cls, dtype)
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
