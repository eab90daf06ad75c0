"""Background removal that works: a tiny segmenter trained on synthetic subject-on-
background scenes (well under a minute on a CPU), exported to ONNX with u2net's inputs
and outputs, cuts fresh scenes out with alpha IoU >= 0.9 against the true mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.background_removal import (
    BackgroundRemover,
    MaskCleanup,
    clean_alpha,
    remove_background,
)
from weights.tiny_segmenter import INPUT_NAME, SIZE, synthetic_scene, train_tiny_segmenter


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> BackgroundRemover:
    path = train_tiny_segmenter(tmp_path_factory.mktemp("segmenter") / "u2net.onnx")
    return BackgroundRemover.load(path)


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    cut = alpha >= 128
    return float((cut & truth).sum() / (cut | truth).sum())


def test_the_exported_net_has_u2nets_interface(trained: BackgroundRemover):
    inputs = trained.session.get_inputs()
    outputs = trained.session.get_outputs()
    assert [i.name for i in inputs] == [INPUT_NAME] and inputs[0].shape[1:] == [3, SIZE, SIZE]
    assert outputs[0].shape[1:] == [1, SIZE, SIZE] and len(outputs) >= 2


def test_removal_matches_the_true_subject_on_fresh_scenes(trained: BackgroundRemover):
    rng = np.random.default_rng(2026)  # never seen in training (seed 0)
    scores = []
    for _ in range(12):
        image, truth = synthetic_scene(rng, SIZE)
        rgba = remove_background(image, trained)
        assert rgba.shape == (SIZE, SIZE, 4) and rgba.dtype == np.uint8
        scores.append(iou(rgba[..., 3], truth))
    assert np.mean(scores) >= 0.9 and np.median(scores) >= 0.9, scores


def test_any_image_size_comes_back_at_its_own_size(trained: BackgroundRemover):
    image, truth = synthetic_scene(np.random.default_rng(7), SIZE)
    big = np.asarray(Image.fromarray(image).resize((600, 450)))
    big_truth = np.asarray(Image.fromarray(truth).resize((600, 450))) > 0
    rgba = remove_background(big, trained)
    assert rgba.shape == (450, 600, 4)
    assert iou(rgba[..., 3], big_truth) >= 0.85


def test_the_alpha_is_clean(trained: BackgroundRemover):
    image, truth = synthetic_scene(np.random.default_rng(11), SIZE)
    rgba = remove_background(image, trained)
    alpha = rgba[..., 3]
    # Almost every pixel is fully in or fully out; soft values only along the outline.
    soft = (alpha > 0) & (alpha < 255)
    assert soft.mean() < 0.05
    # Far from the subject: fully transparent, its colour zeroed; deep inside: opaque.
    assert alpha[0, 0] == 0 and (rgba[0, 0, :3] == 0).all()
    inside = np.argwhere(truth)
    centre = inside[len(inside) // 2]
    assert alpha[tuple(centre)] == 255


def test_an_untrained_net_does_not_cut_it(catalog):
    """The IoU check can fail: the random-weight tiny model finds no subject."""
    remover = BackgroundRemover.load(catalog.first_component("background_removal").source)
    rng = np.random.default_rng(2026)
    scores = []
    for _ in range(4):
        image, truth = synthetic_scene(rng, SIZE)
        scores.append(iou(remove_background(image, remover)[..., 3], truth))
    assert np.mean(scores) < 0.9, scores


def test_cleanup_thresholds_shape_the_ramp():
    mask = np.linspace(0, 1, 11, dtype=np.float32)[None, :]
    alpha = clean_alpha(mask, MaskCleanup(low=0.2, high=0.8))[0]
    assert list(alpha[:3]) == [0, 0, 0] and list(alpha[-3:]) == [255, 255, 255]
    assert 0 < alpha[5] < 255


def test_only_onnx_files_load(tmp_path: Path):
    with pytest.raises(ValueError, match="onnx"):
        BackgroundRemover.load(tmp_path / "u2net.pth")
