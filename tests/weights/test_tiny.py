"""Tiny models: deterministic, atomic, loadable through the same loader as real weights."""

from __future__ import annotations

import json

import pytest

from weights.tiny import MANIFEST, build_tiny, ensure_tiny_models, verify_manifest


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_building_twice_gives_byte_identical_files(tmp_path, catalog, family):
    spec = catalog.get(f"tiny-{family}")
    again = build_tiny(family, tmp_path / family)
    first = json.loads((spec.source / MANIFEST).read_text())
    second = json.loads((again / MANIFEST).read_text())
    assert first == second
    assert any(name.endswith(".safetensors") for name in first)
    assert not any(name.endswith((".bin", ".pt", ".ckpt")) for name in first)
    assert verify_manifest(again) == []


def test_manifest_detects_a_changed_file(tmp_path):
    folder = build_tiny("sd15", tmp_path / "m")
    config = folder / "unet" / "config.json"
    config.write_text(config.read_text() + " ")
    assert verify_manifest(folder) == ["unet/config.json"]


def test_ensure_builds_only_what_is_missing(catalog):
    assert ensure_tiny_models(catalog) == []


def test_unknown_family_is_loud(tmp_path):
    with pytest.raises(KeyError, match="known"):
        build_tiny("sd3", tmp_path / "x")


def test_tiny_models_use_the_real_architectures(catalog):
    from pipelines.families import load_pipeline

    sd15 = load_pipeline(catalog.get("tiny-sd15"), "cpu", None)
    assert type(sd15).__name__ == "StableDiffusionPipeline"
    assert sd15.vae_scale_factor == 8
    assert sd15.tokenizer.model_max_length == 77
    sdxl = load_pipeline(catalog.get("tiny-sdxl"), "cpu", None)
    assert type(sdxl).__name__ == "StableDiffusionXLPipeline"
    assert sdxl.unet.config.addition_embed_type == "text_time"
    assert sdxl.tokenizer_2.pad_token_id == 0


def test_the_tiny_upscaler_builds_byte_identical_across_processes(tmp_path):
    """Hash seeds differ between processes: the file must not depend on them."""
    import hashlib
    import os
    import subprocess
    import sys

    digests = set()
    for seed in ("1", "5"):  # two seeds that ordered a two-key metadata map differently
        out = tmp_path / f"esrgan-{seed}.safetensors"
        code = (
            f"from weights.tiny_upscaler import build_tiny_esrgan; build_tiny_esrgan({str(out)!r})"
        )
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1
