"""An open_clip model loaded from a catalog ``clip`` component, offline, safetensors only.

A component's ``options.architecture`` is open_clip's model name (``ViT-L-14``) with
``source`` a ``.safetensors`` file of its weights, or ``"local-dir"`` with ``source`` an
open_clip folder (``open_clip_config.json`` + ``open_clip_model.safetensors``, as the
tiny model). ``options.quick_gelu = true`` is for weights trained with QuickGELU (OpenAI's).
The tokenizer is open_clip's own, whose BPE vocabulary ships inside the package.

The model's ``sha`` (SHA-256 of its weight and config files) keys the embedding cache.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weights.catalog import PICKLE_SUFFIXES, ComponentSpec

logger = logging.getLogger(__name__)

LOCAL_DIR = "local-dir"
TEXT_BATCH = 256


def files_sha(source: Path) -> str:
    """SHA-256 over a file, or over a folder's files (names and contents, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    for path in files:
        if source.is_dir() and path.name == "kiln-manifest.json":
            continue
        digest.update(path.relative_to(source).as_posix().encode() if source.is_dir() else b"")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ClipModel:
    """An open_clip model with its preprocessing and tokenizer, in eval mode."""

    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    sha: str
    name: str

    @classmethod
    def load(cls, component: ComponentSpec, device: str | None = None) -> ClipModel:
        """Load ``component`` (kind ``clip``) on ``device`` (default: CUDA if present)."""
        import open_clip
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        architecture = str(component.options.get("architecture", LOCAL_DIR))
        source = component.source
        if architecture == LOCAL_DIR:
            if not (source / "open_clip_config.json").is_file():
                raise FileNotFoundError(f"{source}: no open_clip_config.json (local-dir CLIP)")
            pickles = [p.name for p in source.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
            if pickles or not list(source.glob("*.safetensors")):
                raise ValueError(f"{source}: a CLIP folder needs .safetensors and no pickles")
            name = f"{LOCAL_DIR}:{source}"
            model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
            tokenizer = open_clip.get_tokenizer(name)
        else:
            if source.suffix.lower() != ".safetensors":
                raise ValueError(f"{source}: CLIP weights must be a .safetensors file")
            model, _, preprocess = open_clip.create_model_and_transforms(
                architecture,
                pretrained=str(source),
                device=device,
                force_quick_gelu=bool(component.options.get("quick_gelu", False)),
            )
            tokenizer = open_clip.get_tokenizer(architecture)
        model.eval()
        logger.info("loaded CLIP %s (%s) on %s", component.id, architecture, device)
        return cls(model, preprocess, tokenizer, device, files_sha(source), component.id)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    def encode_images(self, images: list[Any]) -> Any:
        """L2-normalised image embeddings (N x D, float32 on CPU) of PIL images."""
        import torch

        batch = torch.stack([self.preprocess(image.convert("RGB")) for image in images])
        with torch.inference_mode():
            features = self.model.encode_image(batch.to(self.device), normalize=True)
        return features.float().cpu()

    def encode_texts(self, texts: list[str]) -> Any:
        """L2-normalised text embeddings (N x D, float32 on CPU)."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), TEXT_BATCH):
                tokens = self.tokenizer(texts[start : start + TEXT_BATCH]).to(self.device)
                out.append(self.model.encode_text(tokens, normalize=True).float().cpu())
        return torch.cat(out)
