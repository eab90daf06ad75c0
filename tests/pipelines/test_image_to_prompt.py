"""Image-to-prompt on the tiny open_clip (random weights): extract types draw only from
their terms, the two wordings differ in form, the user's words win when mixing, and the
vocabulary's text embeddings are cached per (model sha, vocabulary sha).

Ranking that works is shown on a trained tiny CLIP in test_image_to_prompt_training.py.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from PIL import Image

from pipelines.image_to_prompt.embeddings import CACHE_SUBDIR
from pipelines.image_to_prompt.pipeline import ImageToPrompt, ImageToPromptParams
from pipelines.image_to_prompt.ranking import Extract, ScoredTerm
from pipelines.image_to_prompt.vocabulary import (
    EXTRACT_TYPES,
    SHIPPED_LISTS,
    Term,
    VocabList,
    Vocabulary,
    shipped_vocabulary,
)
from pipelines.image_to_prompt.wording import creative, mix, precise
from pipelines.params import ParamError
from weights.catalog import load_catalog
from weights.tiny import build_tiny_component, file_hashes


@pytest.fixture(scope="module")
def clip_home(tmp_path_factory):
    """A KILN_HOME with only the tiny CLIP built (no diffusion models needed here)."""
    home = tmp_path_factory.mktemp("i2p_home")
    component = load_catalog(home).component("tiny-clip")
    build_tiny_component(component.tiny, component.source)
    return home


@pytest.fixture(scope="module")
def component(clip_home):
    return load_catalog(clip_home).component("tiny-clip")


@pytest.fixture(scope="module")
def i2p(component, clip_home) -> ImageToPrompt:
    return ImageToPrompt.load(component, cache_dir=clip_home / CACHE_SUBDIR, device="cpu")


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.new("RGB", (48, 40), (200, 40, 30))


def test_the_tiny_clip_is_an_open_clip_folder_built_deterministically(component, tmp_path):
    assert component.kind == "clip" and component.options["architecture"] == "local-dir"
    names = {p.name for p in component.source.iterdir()}
    assert {"open_clip_config.json", "open_clip_model.safetensors"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names)
    again = build_tiny_component("open_clip", tmp_path / "tiny-clip")
    assert file_hashes(again) == file_hashes(component.source)


def test_the_shipped_vocabulary_has_every_list_and_known_tags():
    vocabulary = shipped_vocabulary()
    assert [v.name for v in vocabulary.lists] == list(SHIPPED_LISTS)
    for vocab_list in vocabulary.lists:
        assert len(vocab_list.terms) >= 10, vocab_list.name
        for term in vocab_list.terms:
            assert term.extracts <= set(EXTRACT_TYPES)
    # Every specific extract type has terms to draw from.
    for extract in EXTRACT_TYPES:
        assert vocabulary.lists_for(extract), extract


@pytest.mark.parametrize("extract", EXTRACT_TYPES)
def test_each_extract_type_draws_only_from_its_terms(i2p, image, extract):
    out = i2p(image, ImageToPromptParams(extract=extract, method="precise", top_k=3))
    vocabulary = i2p.vocabulary
    assert list(out.extract.terms) == [v.name for v in vocabulary.lists_for(extract)]
    for name, terms in out.extract.terms.items():
        allowed = {t.text for t in vocabulary.get(name).terms_for(extract)}
        assert 1 <= len(terms) <= 3
        assert {t.text for t in terms} <= allowed
        scores = [t.score for t in terms]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    if extract != "everything":
        assert all(extract in t.extracts for t in out.extract.all_terms())
        # The prompt is made of those terms only.
        assert set(out.prompt.split(", ")) == {t.text for t in out.extract.all_terms()}
    else:
        assert len(out.extract.terms) == len(vocabulary.lists)


def test_creative_and_precise_differ_in_form(i2p, image):
    exact = i2p(image, ImageToPromptParams(method="precise"))
    flowing = i2p(image, ImageToPromptParams(method="creative"))
    assert exact.extract == flowing.extract  # same ranking, different wording
    # Precise: a literal comma-separated list of the terms, no sentences.
    assert "." not in exact.prompt
    assert sorted(exact.prompt.split(", ")) == sorted(t.text for t in exact.extract.all_terms())
    # Creative: capitalised sentences, mood (flavours, lighting, colour) first, then subject,
    # then setting.
    sentences = re.findall(r"[^.]+\.", flowing.prompt)
    assert len(sentences) == 3 and all(s.strip()[0].isupper() for s in sentences)
    terms = flowing.extract.terms
    assert terms["lighting"][0].text in sentences[0]
    assert terms["colour_grading"][0].text in sentences[0]
    assert terms["outfit"][0].text in sentences[1]
    assert terms["environment"][0].text in sentences[2]
    assert "lit by" in sentences[0] and "wearing" in sentences[1]


def _term(text: str, list_name: str, score: float) -> ScoredTerm:
    return ScoredTerm(text, score, list_name, frozenset())


def test_mixing_keeps_the_users_words_and_drops_conflicting_lists():
    vocabulary = shipped_vocabulary()
    extract = Extract(
        "everything",
        {
            "subjects": (_term("a woman", "subjects", 0.6),),
            "outfit": (_term("a trench coat", "outfit", 0.5), _term("jeans", "outfit", 0.2)),
            "environment": (_term("a dense forest", "environment", 0.7),),
            "lighting": (_term("candlelight", "lighting", 0.4),),
        },
    )
    user = "A man in a hoodie on a city street"
    mixed = mix(user, extract, vocabulary, "precise")
    assert mixed.startswith(user + ", ")
    # The user named a subject ("a man"), an outfit ("a hoodie") and an environment ("a
    # city street"): those lists' extracted terms are dropped; lighting is kept.
    assert mixed == f"{user}, candlelight"
    creative_mix = mix(user, extract, vocabulary, "creative")
    assert creative_mix == f"{user}. Lit by candlelight."
    # No user prompt: the extract is the prompt.
    assert mix(None, extract, vocabulary, "precise") == precise(extract)
    assert mix("  ", extract, vocabulary, "creative") == creative(extract, vocabulary)
    # Whole words only: "mankind" names no subject.
    assert "a woman" in mix("mankind", extract, vocabulary, "precise")


def test_mixing_through_the_pipeline(i2p, image):
    alone = i2p(image, ImageToPromptParams(extract="everything"))
    named = alone.extract.terms["environment"][0].text
    out = i2p(image, ImageToPromptParams(extract="everything", prompt=f"portrait, {named}"))
    assert out.prompt.startswith(f"portrait, {named}, ")
    tail = out.prompt[len(f"portrait, {named}, ") :]
    assert not any(t.text in tail.split(", ") for t in alone.extract.terms["environment"])
    assert alone.extract.terms["lighting"][0].text in tail


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"extract": "hairstyle"}, "extract"),
        ({"method": "poetic"}, "method"),
        ({"top_k": 0}, "top_k"),
    ],
)
def test_unknown_extract_or_method_is_a_param_error(fields, param):
    with pytest.raises(ParamError) as info:
        ImageToPromptParams(**fields)
    assert info.value.param == param


def test_text_embeddings_are_cached_per_model_and_vocabulary(component, image, tmp_path):
    cache = tmp_path / "cache"
    first = ImageToPrompt.load(component, cache_dir=cache, device="cpu")
    out = first(image, ImageToPromptParams())
    assert first.embedding_source == "computed"
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1 and first.clip.sha[:24] in files[0].name
    assert first.vocabulary.sha[:24] in files[0].name
    first(image, ImageToPromptParams())
    assert first.embedding_source == "memory"  # computed once per replica
    # A new replica reads the file instead of computing, and ranks the same.
    second = ImageToPrompt(first.clip, cache_dir=cache)
    assert second(image, ImageToPromptParams()).extract == out.extract
    assert second.embedding_source == "disk"
    # A changed vocabulary (one term more) is another key: recomputed, new file.
    lighting = second.vocabulary.get("lighting")
    grown = dataclasses.replace(
        lighting, terms=lighting.terms + (Term("aurora light", frozenset({"environment"})),)
    )
    changed = Vocabulary(tuple(grown if v is lighting else v for v in second.vocabulary.lists))
    assert changed.sha != second.vocabulary.sha
    second.set_vocabulary(changed)
    out = second(image, ImageToPromptParams(extract="environment", top_k=10))
    assert second.embedding_source == "computed"
    assert len(list(cache.glob("*.safetensors"))) == 2
    assert len(out.extract.terms["lighting"]) == 10
    # The cache file is safetensors with the full shas as metadata, no pickle anywhere.
    from safetensors import safe_open

    with safe_open(str(files[0]), framework="pt") as f:
        meta = f.metadata()
    assert meta == {"model_sha": first.clip.sha, "vocabulary_sha": first.vocabulary.sha}


def test_a_vocabulary_list_refuses_unknown_tags():
    with pytest.raises(ValueError, match="unknown extract types"):
        VocabList.from_dict({"name": "x", "groups": [{"extracts": ["hats"], "terms": ["a"]}]})
    data = json.loads(json.dumps(shipped_vocabulary().get("pose").to_dict()))
    assert data["creative"]["section"] == "subject"
