"""Tiny preview decoders for the default catalog: diffusers' ``AutoencoderTiny`` (the
TAESD architecture) at toy width, one per family whose latents a tiny autoencoder reads.

They stand in for TAESD (SD 1.5), TAESDXL (SDXL) and TAEF1 (FLUX.1) as the tiny base
models stand in for the real ones: the real class, random weights fixed by seed, saved
with ``save_pretrained`` as safetensors and loaded back by ``weights.loading.
load_tiny_autoencoder`` like an installed one. Kept from the real ones: the latent
channels (4, 4, 16), the 8x upsampling of three doubling stages, and the config's
``scaling_factor``/``shift_factor`` the decoder is fed by (TAESD and TAESDXL read the
UNet's scaled latents: 1 and 0; TAEF1 reads FLUX.1's VAE latents: the tiny FLUX.1 VAE's
0.3611 and 0.1159). Shrunk: 8 channels a stage, one block each.
"""

from __future__ import annotations

from pathlib import Path

from weights.tiny import SEED

# Seeds of their own, clear of the base models' (SEED + 0..61).
TAESD_SEED = SEED + 70
TAESDXL_SEED = SEED + 71
TAEF1_SEED = SEED + 72
# FLUX.1's VAE factors (weights.tiny_flux's tiny VAE has the real ones).
FLUX1_SCALING = 0.3611
FLUX1_SHIFT = 0.1159


def _build(out: Path, seed: int, latent_channels: int, scaling: float, shift: float) -> Path:
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    model = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=latent_channels,
        scaling_factor=scaling,
        shift_factor=shift,
    )
    model.save_pretrained(Path(out), safe_serialization=True)
    return Path(out)


def build_tiny_taesd(out: Path) -> Path:
    """Write the tiny TAESD (SD 1.5's 4 latent channels) to folder ``out``."""
    return _build(out, TAESD_SEED, 4, 1.0, 0.0)


def build_tiny_taesdxl(out: Path) -> Path:
    """Write the tiny TAESDXL (SDXL's 4 latent channels) to folder ``out``."""
    return _build(out, TAESDXL_SEED, 4, 1.0, 0.0)


def build_tiny_taef1(out: Path) -> Path:
    """Write the tiny TAEF1 (FLUX.1's 16 latent channels) to folder ``out``."""
    return _build(out, TAEF1_SEED, 16, FLUX1_SCALING, FLUX1_SHIFT)
