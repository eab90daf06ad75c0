"""The CLIP tokenizer built from open_clip's vocabulary tokenizes as open_clip does."""

from __future__ import annotations

import pytest

from weights.tokenizer import MAX_LENGTH, VOCAB_SIZE, clip_tokenizer

SENTENCES = [
    "a photo of a cat",
    "A portrait of an old fisherman in the rain, dramatic lighting, 35mm film, highly detailed",
    "Concept art: a floating castle above the clouds at sunset; trending on artstation!",
    "close-up of a woman's face, freckles, soft window light, shallow depth of field, f/1.8",
    "an isometric 3D render of a tiny coffee shop with 2 baristas & 12 customers",
    "(masterpiece:1.2), [blurry], best quality, ultra-detailed, 8k wallpaper",
    "Café au lait in Paris — naïve watercolour, 1920s poster style",
]


@pytest.fixture(scope="module")
def tokenizers():
    import open_clip

    return clip_tokenizer(), open_clip.get_tokenizer("ViT-L-14")


@pytest.mark.parametrize("text", SENTENCES)
def test_ids_equal_open_clip_up_to_end_of_text(tokenizers, text):
    ours, theirs = tokenizers
    our_ids = ours(text).input_ids
    their_ids = theirs([text])[0].tolist()
    assert our_ids[-1] == ours.eos_token_id == 49407
    # open_clip pads with 0 after end-of-text; ours pads differently by design.
    assert our_ids == their_ids[: len(our_ids)]


def test_vocabulary_and_window(tokenizers):
    ours, _ = tokenizers
    assert len(ours) == VOCAB_SIZE
    assert ours.model_max_length == MAX_LENGTH
    assert ours.bos_token_id == 49406


def test_pad_tokens_of_the_two_sdxl_tokenizers():
    assert clip_tokenizer().pad_token_id == 49407
    assert clip_tokenizer("!").pad_token_id == 0
