"""The tiny open_clip model: open_clip's real ``CLIP`` class (a ViT image tower and the
CLIP text transformer) at toy width, with random weights fixed by seed.

It is written as an open_clip *local-dir* folder, which ``open_clip.create_model(
"local-dir:<folder>")`` rebuilds with no network: ``open_clip_config.json`` (the
architecture, ``model_cfg``, and its preprocessing, ``preprocess_cfg``) beside
``open_clip_model.safetensors``. The text tower keeps CLIP's 49,408-token vocabulary and
77-token context, so open_clip's own tokenizer (its BPE vocabulary ships in the package)
tokenizes for it exactly as for a real CLIP.

Image-to-prompt on it ranks at random (untrained); the test of ranking that works trains
a sibling (this text tower, open_clip's ResNet image tower) and saves it with
``save_clip_folder`` (tests/pipelines/test_image_to_prompt_training.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from weights.tokenizer import MAX_LENGTH, VOCAB_SIZE

SEED = 20261127
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"

# A ViT on 32 px images in 4 px patches (64 patch tokens) and a two-layer text
# transformer, both 64 wide: fast to run and to train on a CPU.
TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 4},
    "text_cfg": {
        "context_length": MAX_LENGTH,
        "vocab_size": VOCAB_SIZE,
        "width": 64,
        "heads": 4,
        "layers": 2,
    },
}
TINY_PREPROCESS_CFG: dict[str, Any] = {
    "size": 32,
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def tiny_clip_model(seed: int = SEED) -> Any:
    """A fresh tiny open_clip ``CLIP`` with seeded random weights (not saved)."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    return open_clip.CLIP(**TINY_MODEL_CFG)


def save_clip_folder(model: Any, out: Path, model_cfg: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as an open_clip local-dir folder (config + safetensors) at ``out``."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": model_cfg or TINY_MODEL_CFG,
        "preprocess_cfg": TINY_PREPROCESS_CFG,
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, out / WEIGHTS_FILE)
    return out


def build_tiny_clip(out: Path) -> Path:
    """Build the tiny open_clip folder at ``out`` (registered as tiny ``open_clip``)."""
    return save_clip_folder(tiny_clip_model(), Path(out))
