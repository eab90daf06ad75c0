"""Device and dtype from a setting: CUDA -> bf16 (fp16 where bf16 is unsupported), CPU -> fp32."""

from __future__ import annotations

from typing import Any


def select_device(setting: str = "auto") -> str:
    """``auto`` picks CUDA when present; ``cpu``/``cuda`` (or ``cuda:N``) are taken as given."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {setting!r} asked for, but CUDA is not available")
    return setting


def select_dtype(device: str) -> Any:
    """The serving dtype for a device."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
