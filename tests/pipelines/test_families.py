"""The family layer: the registry is loud on a miss, each family's record is complete for
what it declares, and no code outside ``pipelines/families`` tests a family's name."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from pipelines.families import FAMILIES, LOADED_TASK, UnknownFamilyError, family_of
from pipelines.params import GenerationDefaults, GenerationParams, ParamError
from weights.catalog import ModelFamily, ModelKind
from weights.single_file import SingleFileLayout, shipped_config_dir
from weights.tiny import TINY_BUILDERS
from weights.transformer_file import ARCHITECTURE_KEYS, TransformerFileLayout

ROOT = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = ("weights", "pipelines", "styles", "agentic", "serving", "benchmarks")
# Where a family may be named: its own module, and the enum's definition (with the grid).
ALLOWED = (ROOT / "pipelines" / "families", ROOT / "weights" / "catalog.py")
# A family member of the enum, or a family compared with a literal name.
NAME_TESTS = re.compile(
    r"ModelFamily\.[A-Z]\w*|family\w*\s*(?:==|!=)\s*[\"']|family\w*\s+(?:not\s+)?in\s+[(\[{]\s*[\"']"
)


def test_every_model_family_has_a_module():
    assert set(FAMILIES) == set(ModelFamily)
    for name, family in FAMILIES.items():
        assert family.name is name


def test_a_family_without_a_module_is_a_loud_miss_naming_the_known_ones():
    with pytest.raises(UnknownFamilyError, match=r"'flux9'; known: sd15, sdxl, flux1, flux2"):
        family_of("flux9")
    assert family_of("sdxl") is family_of(ModelFamily.SDXL) is FAMILIES[ModelFamily.SDXL]


@pytest.mark.parametrize("name", list(ModelFamily))
def test_the_family_table_is_complete_for_every_task_it_declares(name):
    import diffusers

    family = family_of(name)
    assert family.tasks, "a family runs at least one task"
    for task in family.tasks:
        cls = family.pipeline_class(task)
        assert issubclass(cls, diffusers.DiffusionPipeline), task
    for kind, task in LOADED_TASK.items():
        if kind in family.checkpoints:  # a checkpoint of its own (Kontext, Fill, IP2P)
            assert issubclass(family.loaded_class(kind), diffusers.DiffusionPipeline), kind
        elif task in family.tasks:
            assert family.loaded_class(kind) is family.pipeline_class(task)
    # A base model loads as the family's text-to-image pipeline.
    assert family.loaded_class(ModelKind.BASE) is family.pipeline_class("text_to_image")
    for scheduler, (class_name, _overrides) in family.schedulers.items():
        assert hasattr(diffusers, class_name), scheduler
    assert family.compile_blocks
    assert family.denoiser in family.lora.components
    layout = family.single_file
    if isinstance(layout, SingleFileLayout):  # a whole pipeline in one file (SD)
        assert set(layout.text_encoders) <= set(layout.prefixes)
        assert family.denoiser in layout.prefixes and layout.tokenizer_pads
        assert (shipped_config_dir(name) / "model_index.json").is_file()
    elif isinstance(layout, TransformerFileLayout):  # the denoiser alone (FLUX)
        assert family.denoiser == "transformer"
        assert hasattr(diffusers, layout.model_class) and layout.architecture in ARCHITECTURE_KEYS
    assert family.tiny_builder in TINY_BUILDERS
    assert family.size_multiple == name.size_multiple > 0
    accepted = inspect.signature(family.loaded_class(ModelKind.BASE)).parameters
    assert set(family.stock_pipeline_options) <= set(accepted)


def test_a_task_the_family_lacks_is_a_loud_miss():
    family = family_of("sd15")
    with pytest.raises(KeyError, match="family sd15 has no pipeline for task 'upscale'"):
        family.pipeline_class("upscale")


def test_the_scheduler_is_checked_against_the_models_family(catalog, monkeypatch):
    spec = catalog.get("tiny-sdxl")
    known = ", ".join(family_of(spec.family).schedulers)
    with pytest.raises(ParamError, match=f"unknown scheduler 'flow_euler'; known: {known}$"):
        GenerationParams.build(spec, prompt="a cat", scheduler="flow_euler")
    server = GenerationDefaults(scheduler="ddim")
    assert GenerationParams.build(spec, prompt="a cat", defaults=server).scheduler == "ddim"
    # A server default that no family takes is an error, as a request's would be ...
    with pytest.raises(ParamError, match="unknown scheduler 'bogus'"):
        GenerationParams.build(spec, prompt="a", defaults=GenerationDefaults(scheduler="bogus"))
    # ... one that only another family takes gives way to the model's own default.
    monkeypatch.setattr("pipelines.params.KNOWN_SCHEDULERS", (*known.split(", "), "flow_euler"))
    flow = GenerationDefaults(scheduler="flow_euler")
    params = GenerationParams.build(spec, prompt="a cat", defaults=flow)
    assert params.scheduler == spec.default_scheduler


def _name_tests() -> list[str]:
    found = []
    for package in SOURCE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if any(path == allowed or allowed in path.parents for allowed in ALLOWED):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if NAME_TESTS.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_the_grep_finds_a_family_name_test():
    # The pattern itself: what the next test must catch, and what it must let pass.
    assert NAME_TESTS.search("if spec.family == ModelFamily.SDXL:")
    assert NAME_TESTS.search('if family == "sd15":')
    assert NAME_TESTS.search("if family in ('sd15', 'sdxl'):")
    assert not NAME_TESTS.search("if other.family != spec.family:")
    assert not NAME_TESTS.search("family = family_of(spec.family)")


def test_no_code_outside_the_family_modules_tests_a_family_name():
    assert _name_tests() == [], "ask the family (pipelines.families.family_of) instead"
