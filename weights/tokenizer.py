"""The CLIP tokenizer, built from the BPE vocabulary that open_clip ships.

Real SD 1.5 / SDXL checkpoints and our tiny models share one byte-level BPE vocabulary of
49,408 tokens. Building it from open_clip's ``bpe_simple_vocab_16e6.txt.gz`` means no hub
download is ever needed and prompts tokenize exactly as with the real models.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path
from typing import Any

VOCAB_SIZE = 49408
MAX_LENGTH = 77
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (CLIP uses the same)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


@functools.lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary (token -> id) and BPE merges, as open_clip's tokenizer builds them."""
    # Locate the file without importing open_clip: that import pulls in torchvision and
    # timm, costs seconds at start-up and is absent on some GPU images.
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise RuntimeError("open_clip is not installed; it ships the CLIP BPE vocabulary")
    vocab_file = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.decompress(vocab_file.read_bytes()).decode("utf-8").split("\n")
    # Same slice as open_clip.tokenizer.SimpleTokenizer: skip the header line, keep the
    # merges that fit a 49,408-token vocabulary (256 bytes x 2 + merges + 2 specials).
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    tokens = list(_bytes_to_unicode().values())
    tokens += [t + "</w>" for t in tokens]
    tokens += ["".join(m) for m in merges]
    tokens += [BOS, EOS]
    if len(tokens) != VOCAB_SIZE:
        raise RuntimeError(f"open_clip vocabulary has {len(tokens)} tokens, expected {VOCAB_SIZE}")
    return {t: i for i, t in enumerate(tokens)}, merges  # type: ignore[return-value]


def clip_tokenizer(pad_token: str = EOS) -> Any:
    """A ``transformers.CLIPTokenizer`` over open_clip's vocabulary.

    SD 1.5's tokenizer and SDXL's first tokenizer pad with ``<|endoftext|>``; SDXL's
    second tokenizer pads with ``"!"`` (id 0), as the original checkpoints' configs do.
    """
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=pad_token,
        model_max_length=MAX_LENGTH,
    )
