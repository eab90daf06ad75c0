"""Model families, one module each (``sd15``, ``sdxl``, ``flux1``, ``flux2``), and their
registry.

    family = family_of(spec.family)          # loud on a family without a module
    family.pipeline_class(Task.INPAINT)      # StableDiffusionXLInpaintPipeline
    pipe = load_pipeline(spec, "cpu", dtype) # the model as its family loads it

Adding a family is a module here that fills one ``Family`` (``family.py`` says what each
field is for), its ``ModelFamily`` member and catalog entries. Code outside this package
asks the family; it never compares family names (a test greps for that).
"""

from __future__ import annotations

from typing import Any

from pipelines.families import flux1, flux2, sd15, sdxl
from pipelines.families.family import (
    LOADED_TASK,
    Family,
    GuidanceKind,
    InstructInput,
    LoraTargets,
    PromptEncoding,
)
from weights.catalog import ModelFamily, ModelSpec

# ModelFamily -> what the family is.
FAMILIES: dict[ModelFamily, Family] = {
    module.FAMILY.name: module.FAMILY for module in (sd15, sdxl, flux1, flux2)
}


class UnknownFamilyError(KeyError):
    """A family without a module here; the message names the known ones."""

    def __str__(self) -> str:
        return self.args[0]


def family_of(name: ModelFamily | str) -> Family:
    """The family named ``name`` (a ``ModelFamily`` or its text); loud on a miss."""
    try:
        return FAMILIES[name]  # type: ignore[index]
    except KeyError:
        known = ", ".join(FAMILIES)
        raise UnknownFamilyError(f"no family module for {str(name)!r}; known: {known}") from None


def load_pipeline(spec: ModelSpec, device: str, dtype: Any) -> Any:
    """The catalog model ``spec`` as its family loads it: the pipeline class of its kind,
    a single file in the family's layout (``weights.loading`` does the reading)."""
    from weights.loading import load_pipeline as load

    family = family_of(spec.family)
    return load(spec, family.loaded_class(spec.kind), family.single_file, device, dtype)


def check_source(spec: ModelSpec) -> None:
    """What can be told about ``spec``'s files without loading them: a single-file
    transformer's architecture and config folder (``ModelLoadError`` naming ``source``).
    Whole-pipeline files and folders are checked when they load."""
    from weights.transformer_file import TransformerFileLayout, check_transformer_file

    layout = family_of(spec.family).single_file
    if isinstance(layout, TransformerFileLayout) and not spec.source.is_dir():
        check_transformer_file(spec, layout)


__all__ = [
    "check_source",
    "FAMILIES",
    "LOADED_TASK",
    "Family",
    "GuidanceKind",
    "InstructInput",
    "LoraTargets",
    "PromptEncoding",
    "UnknownFamilyError",
    "family_of",
    "load_pipeline",
]
