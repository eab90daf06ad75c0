"""What every weight loader checks before it touches a file, and the error it raises.

Safetensors only: pickle formats (``.ckpt``, ``.bin``, ``.pt``, ``.pth``) are refused
because loading one can run arbitrary code. Kept apart from ``weights.loading`` so that
the loaders it calls (``weights.single_file``) and the adapters that read files of their
own (``pipelines.ip_adapter``, ``styles.lora_file``) share the checks without importing
the loader that calls them.
"""

from __future__ import annotations

from pathlib import Path

from weights.catalog import PICKLE_SUFFIXES


class ModelLoadError(RuntimeError):
    """A model's files are missing or in a format Kiln refuses."""


def refuse_pickle(path: Path) -> None:
    """Raise for pickle checkpoints (.ckpt, .bin, .pt, .pth): they execute code on load."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelLoadError(
            f"{path.name}: pickle checkpoints ({', '.join(PICKLE_SUFFIXES)}) are refused "
            "because loading them can run arbitrary code; convert to .safetensors"
        )


def refuse_pickle_folder(folder: Path) -> None:
    """A diffusers folder whose weights exist only as pickles is refused, not loaded."""
    pickles = [p for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
    safes = list(folder.rglob("*.safetensors"))
    if pickles and not safes:
        raise ModelLoadError(
            f"{folder}: weights are pickle files ({pickles[0].name}); only .safetensors "
            "is loaded because pickles can run code"
        )


def check_safetensors_source(model_id: str, source: Path) -> None:
    """A single-file model's ``source``: a ``.safetensors`` file that exists, not a pickle."""
    refuse_pickle(source)
    if source.suffix.lower() != ".safetensors":
        raise ModelLoadError(f"model {model_id!r}: source {source.name} is not a .safetensors file")
    if not source.is_file():
        raise ModelLoadError(f"model {model_id!r}: source {source} does not exist")
