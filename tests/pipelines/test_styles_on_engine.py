"""LoRA styles on a real tiny engine: selection, not reloads; no leak between calls."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.engine import Engine
from pipelines.params import GenerationParams, StyleRef
from pipelines.style_adapters import StyleLoadError


@pytest.fixture(scope="module")
def engine(catalog) -> Engine:
    return Engine.load(catalog.get("tiny-sd15"), device="cpu", style_capacity=2)


def run(engine: Engine, style: StyleRef | None, seed: int = 5) -> np.ndarray:
    params = GenerationParams.build(
        engine.spec, prompt="a lighthouse", seed=seed, resolution="128px", style=style
    )
    return engine.generate([params])[0].images[0]


def test_switching_a_b_a_gives_the_first_a_again(engine: Engine, tiny_sd15_loras):
    path_a, path_b = tiny_sd15_loras
    a, b = StyleRef("sty_a", str(path_a)), StyleRef("sty_b", str(path_b))
    base = run(engine, None)
    first_a = run(engine, a)
    with_b = run(engine, b)
    again_a = run(engine, a)
    assert np.array_equal(first_a, again_a)
    assert not np.array_equal(first_a, with_b)
    assert not np.array_equal(first_a, base)
    # Back to the base model: the style does not leak into a plain call.
    assert np.array_equal(run(engine, None), base)


def test_strength_scales_the_style(engine: Engine, tiny_sd15_loras):
    path_a, _ = tiny_sd15_loras
    base = run(engine, None).astype(int)
    off = run(engine, StyleRef("sty_a", str(path_a), strength=0.0)).astype(int)
    half = run(engine, StyleRef("sty_a", str(path_a), strength=0.5)).astype(int)
    full = run(engine, StyleRef("sty_a", str(path_a), strength=1.0)).astype(int)
    assert np.abs(off - base).max() <= 1
    assert 0 < np.abs(half - base).mean() < np.abs(full - base).mean()


def test_least_recently_used_style_is_unloaded_and_comes_back(engine: Engine, tiny_sd15_loras):
    path_a, path_b = tiny_sd15_loras
    a = StyleRef("sty_a", str(path_a))
    first_a = run(engine, a)
    run(engine, StyleRef("sty_b", str(path_b)))
    run(engine, StyleRef("sty_c", str(path_b), strength=0.7))  # capacity 2: A goes
    assert engine.styles.loaded == ["sty_b", "sty_c"]
    assert np.array_equal(run(engine, a), first_a)  # loaded again from its file
    assert "sty_a" in engine.styles.loaded


def test_a_bad_style_file_fails_cleanly_and_the_engine_goes_on(engine: Engine, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(StyleLoadError):
        run(engine, StyleRef("sty_bad", str(bad)))
    assert "sty_bad" not in engine.styles.loaded
    run(engine, None)


def test_styles_never_share_a_call(engine: Engine, tiny_sd15_loras):
    path_a, _ = tiny_sd15_loras
    plain = GenerationParams.build(engine.spec, prompt="x", resolution="128px")
    styled = GenerationParams.build(
        engine.spec, prompt="x", resolution="128px", style=StyleRef("sty_a", str(path_a))
    )
    stronger = GenerationParams.build(
        engine.spec,
        prompt="x",
        resolution="128px",
        style=StyleRef("sty_a", str(path_a), strength=0.5),
    )
    assert len({plain.batch_key, styled.batch_key, stronger.batch_key}) == 3
    with pytest.raises(ValueError, match="one batch key"):
        engine.generate([plain, styled])
