"""The tiny T5 and Qwen3 text encoders of the flow-matching families, with their tokenizers.

FLUX.1 reads its prompt through T5 (``T5EncoderModel``, a SentencePiece Unigram tokenizer
ending every prompt with ``</s>``); FLUX.2 [klein] through Qwen3 (``Qwen3ForCausalLM``, a
byte-level BPE tokenizer whose chat template wraps the prompt). The tiny ones are the same
classes at toy width so that prompt counting, truncation and the chat template run as on
the real models; nothing is downloaded.

Both tokenizers are trained with the ``tokenizers`` library on one fixed word list: the
whole words of CLIP's BPE vocabulary that open_clip ships (``weights.tokenizer``), in
CLIP's merge order, which is frequency order; each word is repeated by a Zipf law of its
rank (CLIP's word-final pieces include suffixes such as "ing": fine for a corpus). Common
prompt words end up one or two tokens, rare ones a few; any printable ASCII tokenizes.

Determinism: the BPE trainer is (merges and ids are the same in every process). The
Unigram trainer is not: it keeps the same pieces, but their scores wander in the fourth
decimal and their order with them, from one process to the next. So the Unigram model
keeps the trainer's pieces and gives each the log of its count in the training text,
computed here in Python. A score is only used to choose between segmentations, and this
one is close to what the trainer's EM converges to.
"""

from __future__ import annotations

import functools
import math
import string
from typing import Any

from weights.tokenizer import clip_vocab_and_merges

# How many of CLIP's whole words, in merge order (most frequent first), form the corpus,
# and how often the first of them is repeated (the word of rank r: TOP_REPEATS // r).
WORD_COUNT = 3000
TOP_REPEATS = 100
T5_TRAINED_PIECES = 1000
T5_SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2, as in every T5 checkpoint
T5_EXTRA_IDS = 100  # the span-corruption sentinels every T5 vocabulary ends with
T5_MAX_LENGTH = 512  # FLUX.1-dev's T5 limit; schnell's 256 is a pipeline argument
QWEN_TRAINED_TOKENS = 1000
QWEN_ENDOFTEXT = "<|endoftext|>"
QWEN_IM_START = "<|im_start|>"
QWEN_IM_END = "<|im_end|>"
# Special (never split, skipped on decode) and plain added tokens, in Qwen3's id order.
QWEN_SPECIALS = (QWEN_ENDOFTEXT, QWEN_IM_START, QWEN_IM_END)
QWEN_THINK = ("<think>", "</think>")
QWEN_MAX_LENGTH = 40960  # Qwen3's context; [klein] pads and cuts at its own 512

# Qwen3's chat template, reduced to what an image prompt uses: plain messages, the
# generation prompt, and the empty thinking block ``enable_thinking=False`` asks for. It
# renders those exactly as the real template does.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

_CHARACTERS = string.ascii_letters + string.digits + string.punctuation
# What T5 can spell without <unk>: printable ASCII, Latin-1's letters and signs, and the
# typographic dashes, quotes and ellipsis that pasted prompts carry.
_T5_ALPHABET = sorted(
    set(_CHARACTERS) | {c for c in map(chr, range(0xA1, 0x100)) if c.isprintable()} | set("–—‘’“”…")
)


@functools.lru_cache(maxsize=1)
def training_words() -> tuple[str, ...]:
    """CLIP's first ``WORD_COUNT`` whole words of two or more printable ASCII characters
    (single characters are every tokenizer's alphabet anyway)."""
    vocab, _ = clip_vocab_and_merges()
    allowed = set(_CHARACTERS)
    words = []
    for token, _id in sorted(vocab.items(), key=lambda item: item[1]):
        word = token.removesuffix("</w>")
        if word != token and len(word) > 1 and set(word) <= allowed:
            words.append(word)
        if len(words) == WORD_COUNT:
            break
    return tuple(words)


def training_lines() -> list[str]:
    """The corpus: one line per word, the word repeated ``TOP_REPEATS // rank`` times (at
    least once), separated by spaces."""
    return [
        " ".join([word] * max(1, TOP_REPEATS // rank))
        for rank, word in enumerate(training_words(), start=1)
    ]


def _t5_pretokenizer() -> Any:
    from tokenizers import pre_tokenizers

    # The pre-tokenizer transformers' T5Tokenizer installs: pieces start with "▁".
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        ]
    )


@functools.lru_cache(maxsize=1)
def t5_vocab() -> tuple[tuple[str, float], ...]:
    """T5's (piece, score) list: specials, trained pieces by falling score, sentinels."""
    import json

    from tokenizers import Tokenizer, models, trainers

    lines = training_lines()
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = _t5_pretokenizer()
    trainer = trainers.UnigramTrainer(
        vocab_size=len(T5_SPECIALS) + T5_TRAINED_PIECES,
        special_tokens=list(T5_SPECIALS),
        unk_token="<unk>",
        initial_alphabet=_T5_ALPHABET,  # capitals too: CLIP's words are lower case
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    trained = json.loads(tokenizer.to_str())["model"]["vocab"]
    pieces = sorted({piece for piece, _score in trained} - set(T5_SPECIALS))
    # Each piece's log frequency in the text the pre-tokenizer makes of the corpus (add-one
    # smoothed: capitals and accents do not occur in it).
    text = "".join("▁" + word for line in lines for word in line.split(" "))
    counts = {piece: text.count(piece) + 1 for piece in pieces}
    total = sum(counts.values())
    scored = sorted(
        ((piece, round(math.log(counts[piece] / total), 6)) for piece in pieces),
        key=lambda item: (-item[1], item[0]),
    )
    sentinels = [(f"<extra_id_{i}>", 0.0) for i in reversed(range(T5_EXTRA_IDS))]
    return tuple([(s, 0.0) for s in T5_SPECIALS] + scored + sentinels)


def t5_tokenizer() -> Any:
    """A ``transformers`` T5 tokenizer (Unigram; appends ``</s>``) over ``t5_vocab``."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast(
        vocab=list(t5_vocab()), extra_ids=T5_EXTRA_IDS, model_max_length=T5_MAX_LENGTH
    )


@functools.lru_cache(maxsize=1)
def qwen_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The byte-level BPE vocabulary (token -> id) and merges, before Qwen's specials."""
    import json

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = Tokenizer(models.BPE())
    # The pre-tokenizer transformers' Qwen2Tokenizer installs, so merges never cross it.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # all 256 bytes: no unknowns
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + QWEN_TRAINED_TOKENS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    # A line's first word has no space before it, the others do: both forms are trained.
    tokenizer.train_from_iterator(training_lines(), trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(merge) for merge in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


def qwen_tokenizer() -> Any:
    """A ``transformers`` Qwen2 tokenizer (byte-level BPE) with Qwen3's specials and chat
    template: eos ``<|im_end|>``, pad ``<|endoftext|>``, no bos or unk, as Qwen3's."""
    from tokenizers import AddedToken
    from transformers import Qwen2TokenizerFast

    vocab, merges = qwen_vocab_and_merges()
    vocab = dict(vocab)
    for token in (*QWEN_SPECIALS, *QWEN_THINK):
        vocab[token] = len(vocab)
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab,
        merges=list(merges),
        unk_token=None,
        eos_token=QWEN_IM_END,
        pad_token=QWEN_ENDOFTEXT,
        model_max_length=QWEN_MAX_LENGTH,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIALS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_THINK])
    return tokenizer


def t5_encoder(vocab_size: int) -> Any:
    """A ``T5EncoderModel`` shaped like T5 v1.1 (gated GELU, relative position buckets) at
    toy width: 32 wide, two layers. Draws its weights from torch's current seed."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        tie_word_embeddings=False,
    )
    return T5EncoderModel(config)


# Real Qwen3-4B and -8B have 36 layers; [klein] reads hidden states 9, 18 and 27 of them.
QWEN_LAYERS = 36
QWEN_HIDDEN = 16


def qwen3_encoder(vocab_size: int) -> Any:
    """A ``Qwen3ForCausalLM`` 16 wide but as deep as the real 4B (36 layers), so that
    [klein]'s default layer selection reads intermediate layers as it does there.
    Grouped-query attention (2 heads, 1 KV head) and tied embeddings, as Qwen3-4B."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=QWEN_HIDDEN,
        intermediate_size=32,
        num_hidden_layers=QWEN_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=QWEN_MAX_LENGTH,
        tie_word_embeddings=True,
    )
    return Qwen3ForCausalLM(config)
