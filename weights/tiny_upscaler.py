"""A tiny ESRGAN-family upscaler for tests and the out-of-the-box default.

Real-ESRGAN's compact architecture (``SRVGGNetCompact``, the ``realesr-general-x4v3``
layout spandrel recognises as "Compact") at toy width: 8 features, 2 body convs, a 4x
factor. Compact rather than the RRDB net because RRDB's dense blocks keep 32 growth
channels at any width: a tiny RRDB still takes a second for a 64 px tile on a CPU,
which would make an 8K test run for minutes.

Weights are random, fixed by seed, scaled down, and saved as safetensors, so the upscale
pipeline loads the file exactly as it loads a real model. The architecture adds its body
to a nearest-neighbour enlargement of the input, so small weights give "nearest enlarge
plus a faint random texture": image-like outputs, while every conv still has a 3x3
receptive field and tile borders matter as they do for a real model.
"""

from __future__ import annotations

from pathlib import Path

from weights.tiny import SEED

SCALE = 4
NUM_FEATURES = 8
NUM_CONVS = 2


def build_tiny_esrgan(out: Path) -> Path:
    """Write the tiny 4x ESRGAN-family (Compact) upscaler to ``out`` (``.safetensors``)."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(SEED)
    model = Compact(num_feat=NUM_FEATURES, num_conv=NUM_CONVS, upscale=SCALE)
    state = {key: (value.detach() * 0.1).contiguous() for key, value in model.state_dict().items()}
    # One metadata key: safetensors writes the map in per-process hash order, so two keys
    # would make builds differ byte for byte.
    save_file(state, str(out), metadata={"format": "pt"})
    return Path(out)
