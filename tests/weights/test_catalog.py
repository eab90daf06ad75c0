"""Catalog: shipped entries, overrides from KILN_HOME/models.toml, derived sizes, errors."""

from __future__ import annotations

import pytest

from weights.catalog import (
    UNSPECIFIED_TERMS,
    CatalogError,
    ProviderTerms,
    UnknownModelError,
    load_catalog,
    size_for,
)


def test_shipped_catalog_lists_the_tiny_models(tmp_path):
    cat = load_catalog(tmp_path)
    assert cat.ids() == [
        "tiny-sd15",
        "tiny-sdxl",
        "tiny-instruct",
        "tiny-flux1",
        "tiny-flux2-klein",
        "tiny-flux1-kontext",
        "tiny-flux1-fill",
    ]
    kinds = ["base", "base", "instruct", "base", "base", "instruct", "inpaint"]
    assert [spec.kind for spec in cat] == kinds
    # The FLUX models load on first use: kiln serve does not start them.
    assert [spec.extra.get("min_replicas") for spec in cat][3:] == [0, 0, 0, 0]
    for spec in cat:
        assert spec.source == tmp_path / "models" / spec.id
        assert all(int(side) <= 256 for size in spec.sizes for side in size.split("x"))


def test_sizes_are_resolutions_times_aspect_ratios_snapped_to_the_family_multiple(tmp_path):
    cat = load_catalog(tmp_path)
    assert list(cat.get("tiny-sd15").sizes) == [
        "128x128", "128x88", "88x128", "256x256", "256x168", "168x256",
    ]  # fmt: skip
    assert list(cat.get("tiny-sdxl").sizes) == [
        "128x128", "128x64", "64x128", "256x256", "256x192", "192x256",
    ]  # fmt: skip
    assert size_for(1024, "16:9", 64) == (1024, 576)
    assert size_for(1024, "2:3", 64) == (704, 1024)
    assert size_for(512, "4:3", 8) == (512, 384)


def test_unknown_model_names_the_known_ones(tmp_path):
    with pytest.raises(UnknownModelError) as info:
        load_catalog(tmp_path).get("sdxl-turbo")
    assert "tiny-sd15" in str(info.value) and "tiny-sdxl" in str(info.value)


def test_home_models_toml_adds_and_overrides(tmp_path):
    (tmp_path / "models.toml").write_text(
        """
[models.tiny-sd15]
default_steps = 9

[models.my-sdxl]
kind = "base"
family = "sdxl"
source = "/data/checkpoints/mySDXL.safetensors"
aspect_ratios = ["1:1", "16:9"]
resolutions = { "1K" = 1024 }
credits = { "1K" = 3 }
"""
    )
    cat = load_catalog(tmp_path)
    assert cat.get("tiny-sd15").default_steps == 9
    assert cat.get("tiny-sd15").family == "sd15"  # fields not named are kept
    mine = cat.get("my-sdxl")
    assert str(mine.source) == "/data/checkpoints/mySDXL.safetensors"
    assert list(mine.sizes) == ["1024x1024", "1024x576"]
    assert mine.price("1K", 4) == 12


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('family = "sd3"', "unknown family"),
        ('source = "x.ckpt"', "pickle"),
        ('aspect_ratios = ["wide"]', "W:H"),
        ('credits = { "nope" = 1 }', "credits must name"),
        ('credits = { "128px" = 1.5 }', "whole numbers from 0"),
        ('credits = { "128px" = 1e19 }', "whole numbers from 0"),  # a 500 at reservation
        ('default_resolution = "8K"', "not listed"),
    ],
)
def test_bad_entries_are_refused_with_a_reason(tmp_path, entry, message):
    (tmp_path / "models.toml").write_text(f"[models.tiny-sd15]\n{entry}\n")
    with pytest.raises(CatalogError, match=message):
        load_catalog(tmp_path)


def test_missing_fields_and_bad_toml(tmp_path):
    (tmp_path / "models.toml").write_text('[models.new]\nkind = "base"\n')
    with pytest.raises(CatalogError, match="missing field"):
        load_catalog(tmp_path)
    (tmp_path / "models.toml").write_text("[models\n")
    with pytest.raises(CatalogError, match="TOML"):
        load_catalog(tmp_path)


def test_model_ids_cannot_look_like_style_ids(tmp_path):
    # The OpenAI route reads a model named sty_… as a style.
    (tmp_path / "models.toml").write_text('[models.sty_lookalike]\nkind = "base"\n')
    with pytest.raises(CatalogError, match="may not start with 'sty_'"):
        load_catalog(tmp_path)


def test_components_are_listed_by_kind_and_family(tmp_path):
    cat = load_catalog(tmp_path)
    for component in cat.components.values():
        assert component.source.is_relative_to(tmp_path)
    fitting = cat.components_of("ip_adapter", "sd15")
    assert all(c.fits("sd15") for c in fitting)
    with pytest.raises(KeyError, match="unknown component kind"):
        cat.components_of("warp_drive")
    with pytest.raises(KeyError, match="unknown component"):
        cat.component("nope")


def test_a_component_entry_is_checked(tmp_path):
    extra = tmp_path / "models.toml"
    extra.write_text('[components.x]\nkind = "warp_drive"\nsource = "x"\n')
    with pytest.raises(CatalogError, match="unknown component kind"):
        load_catalog(tmp_path, extra)
    extra.write_text('[components.x]\nkind = "upscaler"\nsource = "x.pth"\n')
    with pytest.raises(CatalogError, match="pickle"):
        load_catalog(tmp_path, extra)


def test_inpaint_model_must_name_an_inpaint_model_of_the_family(tmp_path):
    extra = tmp_path / "models.toml"
    extra.write_text('[models.tiny-sd15]\ninpaint_model = "tiny-sdxl"\n')
    with pytest.raises(CatalogError, match="inpaint_model"):
        load_catalog(tmp_path, extra)


def test_features_follow_kind_and_installed_components(tmp_path):
    cat = load_catalog(tmp_path)
    assert cat.features_of(cat.get("tiny-instruct"))[0] == "instruct"
    base = cat.features_of(cat.get("tiny-sd15"))
    assert {"text_to_image", "reference", "replace", "recreate", "erase"} <= set(base)
    assert "pins" in base  # the shipped catalog has a tiny IP-Adapter per family
    assert "pins" not in cat.features_of(cat.get("tiny-instruct"))


_FLUX_DEV_TERMS = """
[models.tiny-flux1.terms]
license_id = "flux-1-dev-non-commercial-license"
license_url = "https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md"
commercial_model_use = false
commercial_outputs = true
"""


def test_provider_terms_are_data_per_entry(tmp_path):
    # Shipped: Kiln's own tiny weights, any use. An entry without terms claims nothing.
    (tmp_path / "models.toml").write_text(
        _FLUX_DEV_TERMS
        + """
[models.my-sdxl]
kind = "base"
family = "sdxl"
source = "/data/checkpoints/mySDXL.safetensors"
aspect_ratios = ["1:1"]
resolutions = { "1K" = 1024 }
credits = { "1K" = 3 }
"""
    )
    cat = load_catalog(tmp_path)
    tiny = cat.get("tiny-sd15").terms
    assert tiny == ProviderTerms("kiln-tiny-test", "README.md#provider-terms", True, True)
    flux = cat.get("tiny-flux1").terms
    assert flux.license_id == "flux-1-dev-non-commercial-license"
    assert (flux.commercial_model_use, flux.commercial_outputs) == (False, True)
    assert cat.get("my-sdxl").terms == UNSPECIFIED_TERMS
    assert UNSPECIFIED_TERMS.as_dict() == {
        "license_id": "unspecified",
        "license_url": None,
        "commercial_model_use": False,
        "commercial_outputs": False,
    }
    assert ProviderTerms.from_dict(flux.as_dict()) == flux
    assert "terms" not in cat.get("tiny-flux1").extra


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ('terms = "apache-2.0"', "terms must be a table"),
        ('terms = { license_id = "x" }', "missing key"),
        (
            'terms = { license_id = "x", license_url = "u", commercial_model_use = true, '
            "commercial_outputs = true, exclusive = true }",
            "unknown key",
        ),
        (
            'terms = { license_id = "", license_url = "u", commercial_model_use = true, '
            "commercial_outputs = true }",
            "terms.license_id must be",
        ),
        (
            'terms = { license_id = "x", license_url = 3, commercial_model_use = true, '
            "commercial_outputs = true }",
            "terms.license_url must be",
        ),
        (
            'terms = { license_id = "x", license_url = "u", commercial_model_use = "yes", '
            "commercial_outputs = true }",
            "terms.commercial_model_use must be true or false",
        ),
        (
            'terms = { license_id = "x", license_url = "u", commercial_model_use = true, '
            "commercial_outputs = 1 }",
            "terms.commercial_outputs must be true or false",
        ),
    ],
)
def test_bad_terms_are_refused_naming_the_entry_and_key(tmp_path, terms, message):
    (tmp_path / "models.toml").write_text(f"[models.tiny-sd15]\n{terms}\n")
    with pytest.raises(CatalogError, match=message) as info:
        load_catalog(tmp_path)
    assert "'tiny-sd15'" in str(info.value)
