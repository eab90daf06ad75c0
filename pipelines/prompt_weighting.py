"""Weighted, unlimited-length prompts for the CLIP text encoders of SD 1.5 and SDXL.

Prompts are parsed for ``(term:1.3)`` emphasis (``pipelines.prompt_syntax``), tokenized
without special tokens, and split into chunks of 75 tokens. Each chunk is framed as the
encoder expects (BOS + tokens + EOS + the tokenizer's own padding, 77 ids), encoded on its
own, weighted per token with the mean restored (A1111's "Original" emphasis), and the
chunks are joined on the sequence axis. Nothing is ever truncated: a 200-token prompt
becomes a (1, 231, D) embedding, which the UNet's cross-attention takes as it is.

Without emphasis and within 75 tokens the result is exactly what diffusers'
``encode_prompt`` computes, so plain prompts behave as stock diffusers does.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import torch

from pipelines.prompt_syntax import is_break, parse_weighted_prompt

logger = logging.getLogger(__name__)

COMMA_BACKTRACK = 20
"""A chunk that fills up within this many tokens after a comma moves the text after that
comma to the next chunk, so a phrase is not cut in two (A1111's default)."""

CHUNKED_PROMPTS_KEPT = 256
"""Prompts whose chunks a ``PromptChunker`` keeps (a few hundred KiB at most)."""


@dataclass(frozen=True)
class PromptChunk:
    """One 77-id window for one tokenizer, with a weight per id (1.0 on the frame)."""

    ids: list[int]
    weights: list[float]


class PromptChunker:
    """Splits weighted prompts into framed 77-id chunks for one CLIP tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.window = int(tokenizer.model_max_length)  # 77 for CLIP
        self.chunk_length = self.window - 2  # room for BOS and EOS
        self.bos = int(tokenizer.bos_token_id)
        self.eos = int(tokenizer.eos_token_id)
        # SD 1.5 pads with EOS, SDXL's second tokenizer with "!" (id 0): the encoders were
        # trained with their own padding, so each keeps it.
        self.pad = int(tokenizer.pad_token_id)
        self.comma = tokenizer.get_vocab().get(",</w>")
        # A prompt is chunked two or three times a call (the engine counts its windows
        # and the negative's to group requests, then encodes them; 0.2 ms each on a CPU):
        # the last prompts' chunks are kept, by prompt and vocabulary size (a tokenizer
        # given new tokens splits differently). Callers only read them.
        self._kept = functools.lru_cache(maxsize=CHUNKED_PROMPTS_KEPT)(self._chunks)

    def chunks(self, prompt: str) -> list[PromptChunk]:
        """``prompt`` as framed 77-id chunks (at least one)."""
        return self._kept(prompt, len(self.tokenizer))

    def _chunks(self, prompt: str, _vocabulary: int) -> list[PromptChunk]:
        fragments = parse_weighted_prompt(prompt)
        texts = [text for text, _ in fragments]
        # verbose=False: a prompt past 77 tokens is the point here, not a mistake to warn of.
        token_lists = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

        chunks: list[PromptChunk] = []
        tokens: list[int] = []
        weights: list[float] = []
        last_comma = -1

        def close() -> None:
            nonlocal tokens, weights, last_comma
            chunks.append(self._frame(tokens, weights))
            tokens, weights, last_comma = [], [], -1

        for fragment, ids in zip(fragments, token_lists, strict=True):
            if is_break(fragment):
                close()
                continue
            weight = fragment[1]
            for token in ids:
                if token == self.comma:
                    last_comma = len(tokens)
                elif (
                    len(tokens) == self.chunk_length
                    and last_comma != -1
                    and len(tokens) - last_comma <= COMMA_BACKTRACK
                ):
                    cut = last_comma + 1
                    moved = tokens[cut:], weights[cut:]
                    tokens, weights = tokens[:cut], weights[:cut]
                    close()
                    tokens, weights = list(moved[0]), list(moved[1])
                if len(tokens) == self.chunk_length:
                    close()
                tokens.append(token)
                weights.append(weight)
        if tokens or not chunks:
            close()
        return chunks

    def _frame(self, tokens: list[int], weights: list[float]) -> PromptChunk:
        padding = self.chunk_length - len(tokens)
        return PromptChunk(
            ids=[self.bos, *tokens, self.eos] + [self.pad] * padding,
            weights=[1.0, *weights, 1.0] + [1.0] * padding,
        )


class PromptEncoder:
    """Encodes batches of weighted prompts into the embedding kwargs of a diffusers call.

    Works with any pipeline that has ``tokenizer``/``text_encoder`` (SD 1.5 family) and,
    for the SDXL family, ``tokenizer_2``/``text_encoder_2`` as well. Modules are read
    once here; moving the pipeline or loading LoRA weights later changes them in place,
    which this encoder sees.
    """

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe
        pairs = [
            (getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)),
            (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)),
        ]
        # An SDXL refiner has only the second pair; diffusers then uses that one alone.
        self._encoders = [
            (PromptChunker(tok), enc) for tok, enc in pairs if tok is not None and enc is not None
        ]
        if not self._encoders:
            raise ValueError("pipeline has no tokenizer/text_encoder pair to encode prompts with")
        self._sdxl = getattr(pipe, "text_encoder_2", None) is not None
        config = getattr(pipe, "config", {})
        self._zeros_for_empty_negative = self._sdxl and bool(
            config.get("force_zeros_for_empty_prompt", False)
        )

    @property
    def is_sdxl(self) -> bool:
        """Whether this encodes for the SDXL family (two encoders and pooled embeddings)."""
        return self._sdxl

    def chunk_count(self, prompt: str) -> int:
        """How many 75-token windows ``prompt`` needs (at least 1)."""
        return len(self._encoders[0][0].chunks(prompt))

    def check(self, prompt: str, field: str = "prompt") -> None:
        """Nothing to refuse: CLIP's windows take a prompt of any length."""

    @torch.no_grad()
    def encode(self, prompts: list[str], negative_prompts: list[str]) -> dict[str, torch.Tensor]:
        """Keyword arguments for the pipeline call, one row per prompt.

        Returns ``prompt_embeds`` and ``negative_prompt_embeds`` (B, 77·k, D), plus
        ``pooled_prompt_embeds`` and ``negative_pooled_prompt_embeds`` (B, P) for SDXL.
        Every row is padded to the longest prompt or negative with encoded empty chunks, as
        A1111 does, so classifier-free guidance sees equal lengths. Each distinct string is
        encoded once, so a batch repeating one prompt costs one encode.
        """
        if len(prompts) != len(negative_prompts):
            raise ValueError(
                f"got {len(prompts)} prompts but {len(negative_prompts)} negative prompts"
            )
        if not prompts:
            raise ValueError("encode needs at least one prompt")

        # diffusers' force_zeros_for_empty_prompt: SDXL was trained with zeroed
        # unconditional embeddings, so there an empty negative means zeros, not "".
        zeroed = self._zeros_for_empty_negative
        needed = [*prompts, *(n for n in negative_prompts if n or not zeroed)]
        chunked = {
            text: [tok.chunks(text) for tok, _ in self._encoders] for text in dict.fromkeys(needed)
        }
        counts = {text: self._checked_count(text, per_tok) for text, per_tok in chunked.items()}
        target = max(counts.values())
        if any(c < target for c in counts.values()):
            # Shorter rows are padded with the empty prompt's chunk, as A1111 does.
            chunked.setdefault("", [tok.chunks("") for tok, _ in self._encoders])
            counts.setdefault("", 1)

        device = self._pipe._execution_device
        dtype = self._encoders[-1][1].dtype
        encoded = {text: self._encode_chunks(per_tok, device) for text, per_tok in chunked.items()}
        any_embeds, any_pooled = next(iter(encoded.values()))

        def row(text: str, is_negative: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
            if is_negative and zeroed and not text:
                size = (1, target * self._encoders[0][0].window, any_embeds.shape[-1])
                pooled = torch.zeros_like(any_pooled) if any_pooled is not None else None
                return any_embeds.new_zeros(size), pooled
            embeds, pooled = encoded[text]
            missing = target - counts[text]
            if missing:
                embeds = torch.cat([embeds, encoded[""][0].repeat(1, missing, 1)], dim=1)
            return embeds, pooled

        positive = [row(text, is_negative=False) for text in prompts]
        negative = [row(text, is_negative=True) for text in negative_prompts]
        logger.debug(
            "encoded %d distinct prompt strings into %d chunk(s) each", len(encoded), target
        )

        def stack(items: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat(items, dim=0).to(device=device, dtype=dtype)

        out = {
            "prompt_embeds": stack([e for e, _ in positive]),
            "negative_prompt_embeds": stack([e for e, _ in negative]),
        }
        if self._sdxl:
            out["pooled_prompt_embeds"] = stack([p for _, p in positive])
            out["negative_pooled_prompt_embeds"] = stack([p for _, p in negative])
        return out

    def _checked_count(self, text: str, per_tokenizer: list[list[PromptChunk]]) -> int:
        counts = {len(chunks) for chunks in per_tokenizer}
        if len(counts) != 1:
            # SDXL's two tokenizers share one vocabulary; if a custom pair ever differs,
            # the encoders' outputs cannot be joined feature-wise.
            raise ValueError(f"the pipeline's tokenizers split {text!r} into different chunks")
        return counts.pop()

    def _encode_chunks(
        self, per_tokenizer: list[list[PromptChunk]], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(1, 77·k, D) embeddings of one prompt's chunks, and its pooled embedding or None.

        All chunks of a prompt go through an encoder as one batch; a one-chunk prompt is
        thus the same (1, 77) call diffusers makes, which keeps results bit-identical.
        """
        features: list[torch.Tensor] = []
        pooled: torch.Tensor | None = None
        for (_tok, encoder), chunks in zip(self._encoders, per_tokenizer, strict=True):
            ids = torch.tensor([c.ids for c in chunks], dtype=torch.long, device=device)
            output = encoder(ids, output_hidden_states=self._sdxl)
            # SD 1.5 conditions on the final layer; SDXL on the penultimate of both encoders.
            hidden = output.hidden_states[-2] if self._sdxl else output.last_hidden_state
            weights = [c.weights for c in chunks]
            if any(w != 1.0 for row in weights for w in row):
                hidden = _emphasize(hidden, torch.tensor(weights, device=device))
            features.append(hidden.reshape(1, -1, hidden.shape[-1]))
            text_embeds = getattr(output, "text_embeds", None)
            if text_embeds is not None:
                # Pooled text comes from the first chunk only, as in A1111: it summarises
                # the prompt's opening, which is where the subject usually is.
                pooled = text_embeds[:1]
        return torch.cat(features, dim=-1), pooled


def _emphasize(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scale each token's state by its weight, then restore each chunk's mean.

    A1111's "Original" emphasis: without the mean restoration strong weights push the
    whole conditioning off the distribution the UNet was trained on. Done in float32 so
    half-precision means do not round away small weights.
    """
    z = hidden.float()
    # Per chunk rather than A1111's mean over its whole batch, so that a prompt encodes
    # the same whatever it is batched with (identical when A1111 encodes one prompt).
    original_mean = z.mean(dim=(1, 2), keepdim=True)
    z = z * weights.float().unsqueeze(-1)
    new_mean = z.mean(dim=(1, 2), keepdim=True)
    return (z * (original_mean / new_mean)).to(hidden.dtype)
