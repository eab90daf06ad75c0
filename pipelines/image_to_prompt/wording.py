"""Wording an extract as prompt text, and mixing it with a user's prompt.

- precise: a comma-separated list of the kept terms, grouped by extract type (in
  ``EXTRACT_TYPES`` order; a term goes to the first type it serves, terms serving no
  specific type last), most confident first within a group. No sentences.
- creative: up to three sentences from the lists' ``creative`` phrases, in section order
  (mood, lighting and colour first; then subject; then setting), e.g. "Moody, lit by
  candlelight, graded in warm tones. A woman, with freckles, wearing a hoodie. In a
  library, framed as a close-up shot."

Mixing (``mix``): with no user prompt the extract is the prompt; with one, the extract
is appended after dropping every list in which the user's prompt already names a term,
so the user's words win the conflict ("a man in a forest" drops the extract's subjects
and environment). A term is named when its words appear in the prompt as whole words,
case-insensitively, a leading article ignored ("a dense forest" is named by "dense
forest").
"""

from __future__ import annotations

import re

from pipelines.image_to_prompt.ranking import Extract, ScoredTerm
from pipelines.image_to_prompt.vocabulary import EXTRACT_TYPES, SECTIONS, Vocabulary

_ARTICLE = re.compile(r"^(a|an|the)\s+", re.IGNORECASE)


def precise(extract: Extract) -> str:
    """The comma-separated wording (see the module docstring)."""
    order = [e for e in EXTRACT_TYPES if e != "everything"]
    groups: dict[int, list[ScoredTerm]] = {}
    for term in extract.all_terms():
        served = [i for i, e in enumerate(order) if e in term.extracts]
        groups.setdefault(served[0] if served else len(order), []).append(term)
    words: list[str] = []
    for key in sorted(groups):
        words += [t.text for t in sorted(groups[key], key=lambda t: -t.score)]
    return ", ".join(dict.fromkeys(words))


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def creative(extract: Extract, vocabulary: Vocabulary) -> str:
    """The sentence wording (see the module docstring)."""
    sentences = []
    for section in SECTIONS:
        phrases = []
        for vocab_list in vocabulary.lists:
            terms = extract.terms.get(vocab_list.name)
            if vocab_list.section == section and terms:
                phrases.append(vocab_list.phrase.format(_and([t.text for t in terms])))
        if phrases:
            text = ", ".join(phrases)
            sentences.append(text[0].upper() + text[1:] + ".")
    return " ".join(sentences)


def word(extract: Extract, vocabulary: Vocabulary, method: str) -> str:
    """``extract`` as prompt text in ``method`` (``creative`` or ``precise``)."""
    return creative(extract, vocabulary) if method == "creative" else precise(extract)


def names_term(prompt: str, term: str) -> bool:
    """Whether ``prompt`` names ``term`` (whole words, any case, leading article ignored)."""
    core = _ARTICLE.sub("", term.strip()).lower()
    return re.search(rf"(?<!\w){re.escape(core)}(?!\w)", prompt.lower()) is not None


def lists_named(prompt: str, vocabulary: Vocabulary) -> set[str]:
    """The lists in which ``prompt`` names at least one term (any term, not only the
    extract's)."""
    return {v.name for v in vocabulary.lists if any(names_term(prompt, t.text) for t in v.terms)}


def mix(prompt: str | None, extract: Extract, vocabulary: Vocabulary, method: str) -> str:
    """The user's ``prompt`` with ``extract`` appended, the user winning (module docstring);
    the extract alone when ``prompt`` is empty."""
    if prompt is None or not prompt.strip():
        return word(extract, vocabulary, method)
    prompt = prompt.strip()
    extracted = word(extract.without(lists_named(prompt, vocabulary)), vocabulary, method)
    if not extracted:
        return prompt
    if method == "creative":
        return f"{prompt}{'' if prompt[-1] in '.!?' else '.'} {extracted}"
    return f"{prompt.rstrip(',')}, {extracted}"
