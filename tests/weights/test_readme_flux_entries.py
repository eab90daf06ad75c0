"""README's "Add a real FLUX model" block is a valid catalog: each entry loads, with the
family, guidance, prompt limit, defaults, terms, and the edit checkpoints' kinds and
pipelines it says (the weights themselves are not here: nothing is loaded, only the
entries read)."""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.families import GuidanceKind, family_of
from pipelines.params import GenerationParams
from weights.catalog import ModelFamily, ModelKind, load_catalog
from weights.transformer_file import TransformerFileLayout

README = Path(__file__).resolve().parents[2] / "README.md"


def _flux_block() -> str:
    text = README.read_text()
    section = text[text.index("## Add a real FLUX model") :]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


def test_the_readme_flux_entries_load_with_what_they_say(tmp_path):
    (tmp_path / "flux.toml").write_text(_flux_block())
    catalog = load_catalog(tmp_path, tmp_path / "flux.toml")
    ids = ["flux1-dev", "flux1-schnell", "flux2-klein-4b", "flux2-klein-9b"]
    specs = {model_id: catalog.get(model_id) for model_id in ids}
    assert [specs[i].family for i in ids] == [ModelFamily.FLUX1] * 2 + [ModelFamily.FLUX2] * 2
    expected = {  # guidance kind, prompt limit, steps, guidance a request gets by default
        "flux1-dev": (GuidanceKind.EMBEDDED, 512, 28, 3.5),
        "flux1-schnell": (GuidanceKind.NONE, 256, 4, 0.0),
        "flux2-klein-4b": (GuidanceKind.NONE, 512, 4, 0.0),
        "flux2-klein-9b": (GuidanceKind.NONE, 512, 4, 0.0),
    }
    for model_id, (kind, tokens, steps, guidance) in expected.items():
        spec = specs[model_id]
        family = family_of(spec.family)
        assert family.guidance_of(spec) is kind, model_id
        assert family.sequence_length_of(spec) == tokens, model_id
        params = GenerationParams.build(spec, prompt="a lighthouse at dusk")
        assert (params.steps, params.guidance, params.width) == (steps, guidance, 1024), model_id
    assert set(family_of(ModelFamily.FLUX1).schedulers_of(specs["flux1-schnell"])) == {"flow_euler"}
    terms = {i: (specs[i].terms.license_id, specs[i].terms.commercial_outputs) for i in ids}
    # The fine-tune entry: one transformer file, the rest from [dev]'s folder.
    finetune = catalog.get("flux1-dev-finetune")
    assert finetune.source.suffix == ".safetensors"
    assert finetune.config == Path("/data/models/FLUX.1-dev")
    assert isinstance(family_of(finetune.family).single_file, TransformerFileLayout)
    assert finetune.terms == specs["flux1-dev"].terms
    assert terms == {
        "flux1-dev": ("flux-1-dev-non-commercial-license", True),
        "flux1-schnell": ("apache-2.0", True),
        "flux2-klein-4b": ("apache-2.0", True),
        "flux2-klein-9b": ("flux-non-commercial-license", True),
    }


def test_the_readme_flux_edit_checkpoints_are_kontext_and_fill(tmp_path):
    """Kontext is an instruct model, Fill an inpaint model that [dev] names as its
    ``inpaint_model``: the edit tools choose them (serving/core/edits/tools.py)."""
    from pipelines.task import Task
    from serving.core.edits.tools import choose_model, inpaint_model

    (tmp_path / "flux.toml").write_text(_flux_block())
    catalog = load_catalog(tmp_path, tmp_path / "flux.toml")
    kontext, fill = catalog.get("flux1-kontext-dev"), catalog.get("flux1-fill-dev")
    assert (kontext.kind, fill.kind) == (ModelKind.INSTRUCT, ModelKind.INPAINT)
    flux1 = family_of(ModelFamily.FLUX1)
    assert flux1.loaded_class(kontext.kind).__name__ == "FluxKontextPipeline"
    assert flux1.loaded_class(fill.kind).__name__ == "FluxFillPipeline"
    assert catalog.get("flux1-dev").extra["inpaint_model"] == fill.id
    dev = catalog.get("flux1-dev")
    assert inpaint_model(catalog, dev, Task.INPAINT) is fill
    # Pins on [dev] run on Kontext (serving/core/generations/pinned.py), [schnell] has none.
    assert catalog.pins_model(dev) is kontext and "pins" in catalog.features_of(dev)
    assert "pins" not in catalog.features_of(catalog.get("flux1-schnell"))
    assert choose_model(catalog, "instruct", None, "flux1-kontext-dev") is kontext
    # (and image_to_prompt: the shipped catalog's CLIP component serves every model)
    assert set(catalog.features_of(kontext)) - {"image_to_prompt"} == {"instruct"}
    assert set(catalog.features_of(fill)) - {"image_to_prompt"} == {"replace", "recreate", "erase"}
    defaults = {
        model_id: (params.steps, params.guidance)
        for model_id in (kontext.id, fill.id)
        for params in [GenerationParams.build(catalog.get(model_id), prompt="a lantern")]
    }
    assert defaults == {kontext.id: (28, 2.5), fill.id: (50, 30.0)}
    terms = {spec.id: spec.terms.license_id for spec in (kontext, fill)}
    assert set(terms.values()) == {"flux-1-dev-non-commercial-license"}
