"""Prompt emphasis syntax and chunked, weighted encoding on the tiny SD 1.5 and SDXL models."""

from __future__ import annotations

import copy

import pytest
import torch

from pipelines.prompt_syntax import BREAK, parse_weighted_prompt
from pipelines.prompt_weighting import PromptChunker, PromptEncoder

# ---------------------------------------------------------------------------------------
# Parser: pure, milliseconds.
# ---------------------------------------------------------------------------------------

# The examples of A1111's parse_prompt_attention docstring, verbatim.
A1111_EXAMPLES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), A1111_EXAMPLES)
def test_a1111_docstring_examples(text, expected):
    assert parse_weighted_prompt(text) == expected


@pytest.mark.parametrize(
    ("text", "weight"),
    [
        ("(a)", 1.1),
        ("((a))", 1.1 * 1.1),
        ("[a]", 1 / 1.1),
        ("[[a]]", (1 / 1.1) ** 2),
        ("([a])", 1.0),
        ("(a:1.3)", 1.3),
        ("((a:1.3))", 1.3 * 1.1),
        ("[(a:2)]", 2 / 1.1),
        ("(a:0.5)", 0.5),
        ("(a:.5)", 0.5),
        ("(a:2.)", 2.0),
        ("(a:+1.5)", 1.5),
        ("(a:-1)", -1.0),
        ("(a:0)", 0.0),
        ("(a: 1.3 )", 1.3),  # lenient: spaces around the number
    ],
)
def test_weights_multiply_when_nested(text, weight):
    [(fragment, got)] = parse_weighted_prompt(text)
    assert fragment == "a"
    assert got == pytest.approx(weight)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\(a\\)", [("(a)", 1.0)]),
        ("\\[a\\]", [("[a]", 1.0)]),
        ("a \\\\ b", [("a \\ b", 1.0)]),
        ("(\\(a\\))", [("(a)", 1.1)]),
        ("a \\b", [("a \\b", 1.0)]),  # a backslash before anything else is kept as typed
    ],
)
def test_escapes(text, expected):
    assert parse_weighted_prompt(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a) b] c", [("a) b] c", 1.0)]),  # closers with nothing open are text
        ("[unbalanced", [("unbalanced", 1 / 1.1)]),
        ("(a [b", [("a ", 1.1), ("b", 1.0)]),  # open brackets run to the end
        ("a:1.5)", [("a:1.5)", 1.0)]),  # a weight with nothing open is text
        ("(a:b)", [("a:b", 1.1)]),  # a colon without a number is text
        ("(a:1.2.3)", [("a:1.2.3", 1.1)]),  # not a number: text, where A1111 raises
        ("time: 5:30", [("time: 5:30", 1.0)]),
        ("()", [("", 1.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_unbalanced_and_odd_input_is_tolerated(text, expected):
    got = parse_weighted_prompt(text)
    assert [f for f, _ in got] == [f for f, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_adjacent_equal_weights_merge():
    assert parse_weighted_prompt("a (b:1) c") == [("a b c", 1.0)]
    assert parse_weighted_prompt("(a)(b) (c)") == [("ab", 1.1), (" ", 1.0), ("c", 1.1)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a BREAK b", [("a", 1.0), BREAK, ("b", 1.0)]),
        ("BREAK a", [BREAK, ("a", 1.0)]),
        ("a BREAK", [("a", 1.0), BREAK]),
        ("a BREAK BREAK b", [("a", 1.0), BREAK, BREAK, ("b", 1.0)]),
        ("a\nBREAK\nb", [("a", 1.0), BREAK, ("b", 1.0)]),
        # Brackets never turn BREAK into text (A1111 would rescale its marker weight).
        ("(a BREAK b)", [("a", 1.1), BREAK, ("b", 1.1)]),
        ("(a BREAK b:-1)", [("a", -1.0), BREAK, ("b", -1.0)]),
        # Only the upper-case keyword as a word of its own.
        ("breakfast BREAKFAST break", [("breakfast BREAKFAST break", 1.0)]),
    ],
)
def test_break_keyword(text, expected):
    assert parse_weighted_prompt(text) == expected


# ---------------------------------------------------------------------------------------
# Encoder: the tiny models through the real diffusers pipelines.
# ---------------------------------------------------------------------------------------

SD15 = "tiny-sd15"
SDXL = "tiny-sdxl"
FAMILIES = [SD15, SDXL]
WIDTH = {SD15: 32, SDXL: 64}  # hidden size of the tiny text encoders (SDXL: both joined)

# Each word and each comma is one CLIP token: 40 words + 39 commas = 79 tokens.
WORDS = ["cat", "dog", "red", "blue", "house", "tree", "sky", "sun", "moon", "star"]
LONG_79 = ", ".join(WORDS * 4)


@pytest.fixture(scope="module")
def pipes(catalog):
    """The tiny models loaded as stock diffusers pipelines, on CPU in float32."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    loaders = {SD15: StableDiffusionPipeline, SDXL: StableDiffusionXLPipeline}
    return {
        model: loader.from_pretrained(catalog.get(model).source, local_files_only=True)
        for model, loader in loaders.items()
    }


@pytest.fixture(scope="module")
def encoders(pipes):
    return {model: PromptEncoder(pipe) for model, pipe in pipes.items()}


def tokens(pipe, text: str) -> list[int]:
    return pipe.tokenizer(text, add_special_tokens=False)["input_ids"]


def diffusers_embeds(pipe, prompt: str, negative: str | None) -> dict[str, torch.Tensor]:
    """Stock diffusers' encode_prompt, named like our kwargs."""
    common = {"device": "cpu", "num_images_per_prompt": 1, "do_classifier_free_guidance": True}
    out = pipe.encode_prompt(prompt, negative_prompt=negative, **common)
    names = ["prompt_embeds", "negative_prompt_embeds"]
    if len(out) == 4:
        names += ["pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
    return dict(zip(names, out, strict=True))


def test_test_prompts_have_the_token_counts_the_tests_rely_on(pipes):
    assert len(tokens(pipes[SD15], LONG_79)) == 79
    assert len(tokens(pipes[SD15], ", ".join([LONG_79] * 2) + ", " + " ".join(WORDS * 4))) == 200


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize(
    "prompt", ["a lighthouse on a rocky coast at dusk", "", "an old man, portrait, 85mm"]
)
def test_plain_prompt_equals_stock_diffusers_exactly(pipes, encoders, model, prompt):
    ours = encoders[model].encode([prompt], ["blurry, lowres"])
    stock = diffusers_embeds(pipes[model], prompt, "blurry, lowres")
    assert ours.keys() == stock.keys()
    for name, tensor in stock.items():
        assert torch.equal(ours[name], tensor), name


def test_sdxl_empty_negative_is_zeros_like_stock(pipes, encoders):
    ours = encoders[SDXL].encode(["a cat"], [""])
    stock = diffusers_embeds(pipes[SDXL], "a cat", None)  # diffusers zeroes a missing one
    for name, tensor in stock.items():
        assert torch.equal(ours[name], tensor), name
    assert not ours["negative_prompt_embeds"].any()
    assert not ours["negative_pooled_prompt_embeds"].any()


def test_sdxl_empty_negative_is_encoded_without_force_zeros(pipes, encoders):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pipe(pipes[SDXL], force_zeros_for_empty_prompt=False)
    ours = PromptEncoder(pipe).encode(["a cat"], [""])
    stock = diffusers_embeds(pipe, "a cat", "")
    for name, tensor in stock.items():
        assert torch.equal(ours[name], tensor), name
    assert ours["negative_prompt_embeds"].any()


def test_sd15_empty_negative_is_encoded(pipes, encoders):
    ours = encoders[SD15].encode(["a cat"], [""])
    stock = diffusers_embeds(pipes[SD15], "a cat", "")
    assert torch.equal(ours["negative_prompt_embeds"], stock["negative_prompt_embeds"])


@pytest.mark.parametrize("model", FAMILIES)
def test_long_prompt_is_chunked_not_truncated(encoders, model):
    encoder = encoders[model]
    prompt = ", ".join([LONG_79] * 2) + ", " + " ".join(WORDS * 4)  # 79+1+79+1+40 = 200 tokens
    assert encoder.chunk_count(prompt) == 3
    out = encoder.encode([prompt], [""])
    assert out["prompt_embeds"].shape == (1, 231, WIDTH[model])
    assert out["negative_prompt_embeds"].shape == (1, 231, WIDTH[model])
    if model == SDXL:
        assert out["pooled_prompt_embeds"].shape == (1, 32)


@pytest.mark.parametrize("model", FAMILIES)
def test_words_past_token_77_reach_the_embeddings(encoders, model):
    encoder = encoders[model]
    dog = encoder.encode([LONG_79 + ", a dog"], [""])["prompt_embeds"]
    cat = encoder.encode([LONG_79 + ", a cat"], [""])["prompt_embeds"]
    assert dog.shape == cat.shape == (1, 154, WIDTH[model])
    assert torch.equal(dog[:, :77], cat[:, :77])  # the first window is untouched
    assert not torch.allclose(dog[:, 77:], cat[:, 77:])


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("", 1),
        ("a cat", 1),
        (" ".join(["cat"] * 75), 1),
        (" ".join(["cat"] * 76), 2),
        (" ".join(["cat"] * 150), 2),
        (" ".join(["cat"] * 151), 3),
        ("a cat BREAK a dog", 2),
        ("BREAK a dog", 2),  # A1111 closes an empty first chunk too
        ("a cat BREAK", 1),  # ... but never adds a trailing empty one
        ("a BREAK BREAK b", 3),
        ("(cat:1.4) " * 80, 2),  # brackets and weights are not tokens
    ],
)
def test_chunk_count(encoders, prompt, expected):
    assert encoders[SD15].chunk_count(prompt) == expected
    assert encoders[SDXL].chunk_count(prompt) == expected


def test_chunk_frames_use_each_tokenizers_own_padding(pipes):
    [chunk] = PromptChunker(pipes[SD15].tokenizer).chunks("a cat")
    bos, eos = 49406, 49407
    assert chunk.ids == [bos, *tokens(pipes[SD15], "a cat"), eos] + [eos] * 73
    tokenizers = pipes[SDXL].tokenizer, pipes[SDXL].tokenizer_2
    first, second = (PromptChunker(tok).chunks("a cat")[0] for tok in tokenizers)
    assert first.ids == chunk.ids
    assert second.ids == [bos, *tokens(pipes[SD15], "a cat"), eos] + [0] * 73  # "!" pads
    assert chunk.weights == [1.0] * 77


def test_chunk_weights_follow_tokens(pipes):
    [chunk] = PromptChunker(pipes[SD15].tokenizer).chunks("a (red:1.5) [cat]")
    assert len(chunk.ids) == len(chunk.weights) == 77
    assert chunk.weights[:4] == pytest.approx([1.0, 1.0, 1.5, 1 / 1.1])
    assert chunk.weights[4:] == [1.0] * 73


def test_comma_near_the_window_edge_moves_the_phrase(pipes):
    tok = PromptChunker(pipes[SD15].tokenizer)
    [cat], [dog] = tokens(pipes[SD15], "cat"), tokens(pipes[SD15], "dog")
    # 60 tokens, a comma, then a 30-word phrase: the phrase moves whole to chunk two.
    first, second = tok.chunks(" ".join(["cat"] * 60) + ", " + " ".join(["dog"] * 30))
    assert first.ids == [tok.bos, *[cat] * 60, tok.comma, tok.eos] + [tok.eos] * 14
    assert second.ids == [tok.bos, *[dog] * 30, tok.eos] + [tok.eos] * 45
    # A comma further back than 20 tokens moves nothing: the window is filled to 75.
    first, second = tok.chunks(" ".join(["cat"] * 40) + ", " + " ".join(["dog"] * 50))
    assert first.ids == [tok.bos, *[cat] * 40, tok.comma, *[dog] * 34, tok.eos]
    assert second.ids[:18] == [tok.bos, *[dog] * 16, tok.eos]


@pytest.mark.parametrize("model", FAMILIES)
def test_emphasis_scales_only_the_weighted_token_then_restores_the_mean(encoders, model):
    encoder = encoders[model]
    plain = encoder.encode(["a photo of a cat"], [""])["prompt_embeds"][0]
    weighted = encoder.encode(["a photo of a (cat:1.5)"], [""])["prompt_embeds"][0]
    assert not torch.allclose(plain, weighted)
    # Per encoder (SDXL: each half of the features), weighted = plain * w * r with one
    # ratio r per chunk; r restores the mean.
    halves = [slice(0, 32), slice(32, 64)] if model == SDXL else [slice(0, 32)]
    cat_position = 5  # BOS a photo of a cat
    for half in halves:
        p, w = plain[:, half], weighted[:, half]
        ratio = (w[0] @ p[0]) / (p[0] @ p[0])  # least squares on the BOS row
        expected = p * ratio
        expected[cat_position] *= 1.5
        torch.testing.assert_close(w, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(w.mean(), p.mean(), rtol=1e-4, atol=1e-6)
    if model == SDXL:
        # Pooled embeddings are not weighted (A1111 and compel agree).
        pooled = encoder.encode(["a photo of a (cat:1.5)"], [""])["pooled_prompt_embeds"]
        plain_pooled = encoder.encode(["a photo of a cat"], [""])["pooled_prompt_embeds"]
        assert torch.equal(pooled, plain_pooled)


@pytest.mark.parametrize("model", FAMILIES)
def test_unit_weight_and_escapes_match_plain(encoders, model):
    encoder = encoders[model]
    plain = encoder.encode(["a photo of a cat"], [""])["prompt_embeds"]
    assert torch.equal(encoder.encode(["a photo of a (cat:1)"], [""])["prompt_embeds"], plain)
    assert torch.equal(encoder.encode(["a photo of ([a cat])"], [""])["prompt_embeds"], plain)


@pytest.mark.parametrize("model", FAMILIES)
def test_positive_and_negative_are_padded_to_equal_length(encoders, model):
    encoder = encoders[model]
    out = encoder.encode(["a cat"], [LONG_79 + ", ugly"])
    assert out["prompt_embeds"].shape == out["negative_prompt_embeds"].shape
    assert out["prompt_embeds"].shape == (1, 154, WIDTH[model])
    short = encoder.encode(["a cat"], ["ugly"])
    empty = encoder.encode([""], ["ugly"])["prompt_embeds"]
    # The short prompt keeps its own first window and gains the empty prompt's chunk.
    assert torch.equal(out["prompt_embeds"][:, :77], short["prompt_embeds"])
    assert torch.equal(out["prompt_embeds"][:, 77:], empty)
    if model == SDXL:
        assert torch.equal(out["pooled_prompt_embeds"], short["pooled_prompt_embeds"])
    # A long prompt pads an empty SDXL negative with zeros of the same length.
    zeros = encoder.encode([LONG_79], [""])["negative_prompt_embeds"]
    assert zeros.shape == (1, 154, WIDTH[model])


@pytest.mark.parametrize("model", FAMILIES)
def test_batch_equals_each_prompt_alone(encoders, model):
    encoder = encoders[model]
    p1, p2 = "a (red:1.3) lighthouse", LONG_79 + ", [storm]"
    batch = encoder.encode([p1, p1, p2], ["blurry", "blurry", ""])
    alone1 = encoder.encode([p1], ["blurry"])
    alone2 = encoder.encode([p2], [""])
    empty = encoder.encode([""], ["blurry"])["prompt_embeds"]
    assert batch["prompt_embeds"].shape == (3, 154, WIDTH[model])
    for name, tensor in batch.items():
        assert torch.equal(tensor[2:3], alone2[name]), name
        assert torch.equal(tensor[0], tensor[1]), name
    padded1 = torch.cat([alone1["prompt_embeds"], empty], dim=1)
    assert torch.equal(batch["prompt_embeds"][0:1], padded1)
    if model == SDXL:
        assert torch.equal(batch["pooled_prompt_embeds"][0:1], alone1["pooled_prompt_embeds"])


def test_each_distinct_string_is_encoded_once(pipes, encoders):
    rows: list[int] = []
    hook = pipes[SD15].text_encoder.register_forward_hook(
        lambda _module, args, _out: rows.append(args[0].shape[0])
    )
    try:
        encoders[SD15].encode(["a cat"] * 4, ["blurry"] * 4)
    finally:
        hook.remove()
    assert rows == [1, 1]  # "a cat" once, "blurry" once


def test_prompt_and_negative_counts_must_match(encoders):
    with pytest.raises(ValueError, match="negative"):
        encoders[SD15].encode(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="at least one"):
        encoders[SD15].encode([], [])


@pytest.mark.parametrize("model", FAMILIES)
def test_kwargs_drive_the_stock_pipeline(pipes, encoders, model):
    # Two windows of conditioning go through the UNet's cross-attention as they are.
    kwargs = encoders[model].encode([LONG_79 + ", (cat:1.2)"] * 2, ["blurry"] * 2)
    images = pipes[model](
        **kwargs,
        num_inference_steps=1,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert images.shape == (2, 64, 64, 3)


def test_a_prompts_chunks_are_kept_until_the_tokenizer_changes(pipes):
    """The engine counts a prompt's windows before it encodes it: the second chunking is
    the first's, kept; a tokenizer given a new token chunks the prompt afresh."""
    tokenizer = copy.deepcopy(pipes[SD15].tokenizer)
    chunker = PromptChunker(tokenizer)
    first = chunker.chunks("a kilnglaze vase")
    assert chunker.chunks("a kilnglaze vase") is first
    tokenizer.add_tokens(["kilnglaze"])
    again = chunker.chunks("a kilnglaze vase")
    assert again is not first and len(again[0].ids) == len(first[0].ids) == 77
    assert again[0].ids != first[0].ids and len(tokenizer) - 1 in again[0].ids
