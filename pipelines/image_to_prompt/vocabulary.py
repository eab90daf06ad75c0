"""The vocabulary image-to-prompt ranks: lists of terms, one per attribute family.

The lists ship as JSON data in this package (``vocabulary/<name>.json``). Each file holds

- ``name``: the list's name (``lighting``)
- ``templates``: CLIP zero-shot prompt templates, ``{}`` standing for the term; a term's
  embedding is the mean of its templates' embeddings, as in CLIP's zero-shot classifier
- ``creative``: where the list goes in the creative wording: ``section`` (``mood``,
  ``subject`` or ``setting``, the order of the sentences) and ``phrase`` (``"lit by {}"``)
- ``groups``: terms with the extract types they serve (``{"extracts": [...], "terms":
  [...]}``); every term serves ``everything``, so ``"extracts": []`` means only that.

An extract type draws only from the terms tagged with it. The vocabulary's ``sha`` covers
every list, term, tag and template: it keys the text-embedding cache, so any edit to a
list invalidates the cached embeddings.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pipelines.params import ParamError

EVERYTHING = "everything"
# The extract types a request may name (DESIGN.md §1), in the order precise wording groups.
EXTRACT_TYPES = (
    "appearance", "outfit", "pose", "colour_grading", "composition", "environment", EVERYTHING,
)  # fmt: skip
METHODS = ("creative", "precise")
# Sentences of the creative wording, in order: mood, lighting and colour lead.
SECTIONS = ("mood", "subject", "setting")
# The shipped lists, in the order the creative wording uses them within a section.
SHIPPED_LISTS = (
    "flavours", "lighting", "colour_grading", "subjects", "appearance", "outfit", "pose",
    "environment", "composition", "mediums", "movements",
)  # fmt: skip
DEFAULT_TEMPLATES = ("a photo of {}.", "an image of {}.", "art of {}.")


@dataclass(frozen=True)
class Term:
    """One term and the extract types it serves (besides ``everything``)."""

    text: str
    extracts: frozenset[str]

    def serves(self, extract: str) -> bool:
        return extract == EVERYTHING or extract in self.extracts


@dataclass(frozen=True)
class VocabList:
    """One attribute family's terms, their zero-shot templates and creative phrasing."""

    name: str
    terms: tuple[Term, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    section: str = "subject"
    phrase: str = "{}"

    def terms_for(self, extract: str) -> tuple[Term, ...]:
        """The terms an ``extract`` may draw from this list (empty: the list is not used)."""
        return tuple(t for t in self.terms if t.serves(extract))

    def to_dict(self) -> dict[str, Any]:
        """The list as plain data, terms in order (what the sha covers)."""
        return {
            "name": self.name,
            "templates": list(self.templates),
            "creative": {"section": self.section, "phrase": self.phrase},
            "terms": [[t.text, sorted(t.extracts)] for t in self.terms],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VocabList:
        """A list from its JSON form (see the module docstring); loud on anything unknown."""
        name = data["name"]
        terms: list[Term] = []
        for group in data["groups"]:
            extracts = frozenset(group.get("extracts", ()))
            unknown = sorted(extracts - set(EXTRACT_TYPES))
            if unknown:
                raise ValueError(f"vocabulary list {name!r}: unknown extract types {unknown}")
            terms += [Term(text, extracts) for text in group["terms"]]
        creative = data.get("creative", {})
        section = creative.get("section", "subject")
        if section not in SECTIONS:
            raise ValueError(f"vocabulary list {name!r}: section must be one of {SECTIONS}")
        templates = tuple(data.get("templates", DEFAULT_TEMPLATES))
        if not terms or not templates or any("{}" not in t for t in templates):
            raise ValueError(f"vocabulary list {name!r}: needs terms and templates with {{}}")
        texts = [t.text for t in terms]
        if len(set(texts)) != len(texts):
            raise ValueError(f"vocabulary list {name!r}: a term is listed twice")
        return cls(name, tuple(terms), templates, section, creative.get("phrase", "{}"))


@dataclass(frozen=True)
class Vocabulary:
    """Every list image-to-prompt ranks, in order."""

    lists: tuple[VocabList, ...]

    @functools.cached_property
    def sha(self) -> str:
        """SHA-256 of the canonical JSON of every list: the embedding cache's key."""
        text = json.dumps([v.to_dict() for v in self.lists], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, name: str) -> VocabList:
        for vocab_list in self.lists:
            if vocab_list.name == name:
                return vocab_list
        raise KeyError(f"no vocabulary list {name!r}; known: {[v.name for v in self.lists]}")

    def lists_for(self, extract: str) -> tuple[VocabList, ...]:
        """The lists an ``extract`` draws from: those with at least one term serving it."""
        return tuple(v for v in self.lists if v.terms_for(extract))


def check_extract(extract: str, param: str = "extract") -> str:
    """``extract`` if it is a known extract type, else a 400 naming ``param``."""
    if extract not in EXTRACT_TYPES:
        raise ParamError(param, f"unknown extract {extract!r}; one of: {', '.join(EXTRACT_TYPES)}")
    return extract


def check_method(method: str, param: str = "method") -> str:
    """``method`` if it is a known wording, else a 400 naming ``param``."""
    if method not in METHODS:
        raise ParamError(param, f"unknown method {method!r}; one of: {', '.join(METHODS)}")
    return method


@functools.lru_cache(maxsize=1)
def shipped_vocabulary() -> Vocabulary:
    """The vocabulary shipped with Kiln (package data, read once per process)."""
    folder = resources.files("pipelines.image_to_prompt").joinpath("vocabulary")
    lists = []
    for name in SHIPPED_LISTS:
        data = json.loads(folder.joinpath(f"{name}.json").read_text())
        if data["name"] != name:
            raise ValueError(f"vocabulary/{name}.json names itself {data['name']!r}")
        lists.append(VocabList.from_dict(data))
    return Vocabulary(tuple(lists))
