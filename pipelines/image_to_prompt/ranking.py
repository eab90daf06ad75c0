"""Ranking: an image embedding against each list's cached term embeddings.

Scores are CLIP's zero-shot probabilities within a list: softmax over the terms the
extract may draw from of ``logit_scale x cosine``. The top ``top_k`` terms of every list
the extract draws from are kept, best first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pipelines.image_to_prompt.vocabulary import Vocabulary


@dataclass(frozen=True)
class ScoredTerm:
    """A term of list ``list_name`` with its probability within that list."""

    text: str
    score: float
    list_name: str
    extracts: frozenset[str]


@dataclass(frozen=True)
class Extract:
    """The scored top terms per list (lists in vocabulary order, terms best first)."""

    extract: str
    terms: dict[str, tuple[ScoredTerm, ...]]

    def without(self, list_names: set[str]) -> Extract:
        """The same extract with the lists ``list_names`` dropped (the user named them)."""
        kept = {k: v for k, v in self.terms.items() if k not in list_names}
        return replace(self, terms=kept)

    def all_terms(self) -> list[ScoredTerm]:
        return [term for terms in self.terms.values() for term in terms]


def rank(
    image_embedding: Any,
    text_embeddings: dict[str, Any],
    vocabulary: Vocabulary,
    extract: str,
    top_k: int,
    logit_scale: float,
) -> Extract:
    """Top ``top_k`` terms of each list ``extract`` draws from, for one normalised image
    embedding (D)."""
    import torch

    out: dict[str, tuple[ScoredTerm, ...]] = {}
    for vocab_list in vocabulary.lists_for(extract):
        indices = [i for i, t in enumerate(vocab_list.terms) if t.serves(extract)]
        embeddings = text_embeddings[vocab_list.name][indices]
        logits = logit_scale * (embeddings @ image_embedding)
        probs = torch.softmax(logits.float(), dim=0)
        scores, order = probs.topk(min(top_k, len(indices)))
        out[vocab_list.name] = tuple(
            ScoredTerm(
                vocab_list.terms[indices[j]].text,
                round(float(s), 4),
                vocab_list.name,
                vocab_list.terms[indices[j]].extracts,
            )
            for s, j in zip(scores.tolist(), order.tolist(), strict=True)
        )
    return Extract(extract, out)
