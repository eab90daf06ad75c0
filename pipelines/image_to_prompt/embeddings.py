"""Text embeddings of the vocabulary, cached per (CLIP model sha, vocabulary sha).

A term's embedding is the normalised mean of its templates' embeddings (CLIP's zero-shot
classifier). Embedding a few hundred terms x templates takes a while on a big CLIP, and
the result only changes with the model or the vocabulary, so it is computed once and kept

- in memory by the replica's ``ImageToPrompt`` (computed once per replica), and
- on disk as ``KILN_HOME/cache/image_to_prompt/<model sha>-<vocabulary sha>.safetensors``
  (safetensors, never pickle), so the next replica or restart only reads it.

A changed vocabulary has another sha, hence another file: stale embeddings are never read.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from pipelines.image_to_prompt.clip_model import ClipModel
from pipelines.image_to_prompt.vocabulary import Vocabulary

logger = logging.getLogger(__name__)

CACHE_SUBDIR = Path("cache") / "image_to_prompt"


def cache_path(cache_dir: Path, model_sha: str, vocabulary_sha: str) -> Path:
    """Where the embeddings of this model and vocabulary are cached."""
    return Path(cache_dir) / f"{model_sha[:24]}-{vocabulary_sha[:24]}.safetensors"


def compute_text_embeddings(clip: ClipModel, vocabulary: Vocabulary) -> dict[str, Any]:
    """List name -> (terms x D) normalised term embeddings, templates averaged."""
    out = {}
    for vocab_list in vocabulary.lists:
        texts = [tpl.format(t.text) for t in vocab_list.terms for tpl in vocab_list.templates]
        per_text = clip.encode_texts(texts)
        per_term = per_text.reshape(len(vocab_list.terms), len(vocab_list.templates), -1)
        mean = per_term.mean(dim=1)
        out[vocab_list.name] = mean / mean.norm(dim=-1, keepdim=True)
    return out


def load_cached(path: Path, model_sha: str, vocabulary_sha: str) -> dict[str, Any] | None:
    """The cached embeddings at ``path`` if it exists and is for this model and vocabulary."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("model_sha") != model_sha or meta.get("vocabulary_sha") != vocabulary_sha:
                return None
            return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (no __iter__)
    except Exception as exc:  # a torn or foreign file is recomputed, not fatal
        logger.warning("ignoring unreadable embedding cache %s: %s", path, exc)
        return None


def save_cached(path: Path, embeddings: dict[str, Any], model_sha: str, vocabulary_sha: str):
    """Write ``embeddings`` to ``path`` atomically (beside it, then renamed in)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        tensors = {k: v.contiguous() for k, v in embeddings.items()}
        meta = {"model_sha": model_sha, "vocabulary_sha": vocabulary_sha}
        save_file(tensors, staging, metadata=meta)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def text_embeddings(
    clip: ClipModel, vocabulary: Vocabulary, cache_dir: Path | None
) -> tuple[dict[str, Any], str]:
    """The vocabulary's embeddings and where they came from: ``"disk"`` or ``"computed"``
    (then written to the cache; ``cache_dir=None`` keeps nothing on disk)."""
    path = cache_path(cache_dir, clip.sha, vocabulary.sha) if cache_dir is not None else None
    if path is not None:
        cached = load_cached(path, clip.sha, vocabulary.sha)
        if cached is not None:
            return cached, "disk"
    embeddings = compute_text_embeddings(clip, vocabulary)
    if path is not None:
        save_cached(path, embeddings, clip.sha, vocabulary.sha)
        logger.info("cached %d vocabulary lists' embeddings at %s", len(embeddings), path)
    return embeddings, "computed"
