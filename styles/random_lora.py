"""Random LoRA files for tests and benchmarks: real files in diffusers' key layout, with
random (non-zero) weights so they visibly change images. Not a training method.

    random_unet_lora(unet_dir, out_file, seed=1, rank=4)
    pipe.load_lora_weights(out_file, adapter_name="a")
"""

from __future__ import annotations

from pathlib import Path

# The attention projections diffusers' LoRA recipe adapts.
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


def random_unet_lora(unet_dir: Path, out_file: Path, seed: int, rank: int = 4) -> Path:
    """A rank-``rank`` LoRA on the attention projections of the UNet at ``unet_dir``,
    weights drawn from ``seed``; written to ``out_file``."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(unet_dir)
    # init_lora_weights=False: random A and B, so the adapter is not a no-op.
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=TARGET_MODULES)
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    # The SD 1.5 class writes the UNet-only layout both families' loaders read.
    StableDiffusionPipeline.save_lora_weights(
        out_file.parent, unet_lora_layers=layers, weight_name=out_file.name
    )
    return out_file
