"""The prompt emphasis syntax that studio users write, as AUTOMATIC1111's web UI reads it.

``(a)`` multiplies the attention of ``a`` by 1.1, ``[a]`` divides it by 1.1, ``(a:1.3)``
sets the multiplier to 1.3; nesting multiplies; ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are
literal characters; brackets left open at the end still apply, and stray closing brackets
are plain text. The keyword ``BREAK`` (upper case, a word of its own) ends the current
75-token chunk of the text encoder.

Pure string work, no torch: the encoder in ``pipelines.prompt_weighting`` consumes it.
"""

from __future__ import annotations

import re

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

BREAK: tuple[str, float] = ("BREAK", -1.0)
"""The fragment that stands for the ``BREAK`` keyword (the same pair A1111 uses)."""

# One alternative per token of the syntax, tried in order. Unlike A1111's ``[.\d]+`` the
# number must be a real decimal, so ``(a:1.2.3)`` reads as text instead of raising.
_TOKEN = re.compile(
    r"""
    \\[()\[\]\\]                                # escaped bracket or backslash
    | \\                                        # any other backslash: plain text
    | \(                                        # open round
    | \[                                        # open square
    | :\s*(?P<weight>[+-]?(?:\d+\.?\d*|\.\d+))\s*\)   # explicit weight, closes a round
    | \)                                        # close round
    | \]                                        # close square
    | [^\\()\[\]:]+                             # plain text
    | :                                         # a colon that is not a weight
    """,
    re.VERBOSE,
)
_BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*")


def parse_weighted_prompt(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into ``(fragment, weight)`` pairs, adjacent equal weights merged.

    Each ``BREAK`` keyword comes back as the ``BREAK`` pair, whatever brackets surround it.
    An empty prompt is ``[("", 1.0)]``. Two deliberate leniencies over A1111: spaces are
    allowed around an explicit weight (``(a: 1.3)``), and a malformed number such as
    ``(a:1.2.3)`` is text rather than an error.

    >>> parse_weighted_prompt("an (important) word")
    [('an ', 1.0), ('important', 1.1), (' word', 1.0)]
    """
    # Mutable fragments, so that a closing bracket can rescale everything since its opener.
    parts: list[list] = []  # [text, weight, is_break]
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for part in parts[start:]:
            # BREAK is structure, not text: brackets around it never change what it means.
            if not part[2]:
                part[1] *= factor

    for match in _TOKEN.finditer(text):
        token = match.group(0)
        weight = match.group("weight")
        if token.startswith("\\") and len(token) == 2:
            parts.append([token[1], 1.0, False])
        elif token == "(":
            round_open.append(len(parts))
        elif token == "[":
            square_open.append(len(parts))
        elif weight is not None and round_open:
            multiply_from(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            multiply_from(round_open.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            multiply_from(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            # Plain text, or a bracket/weight with nothing open to close: kept as typed.
            for i, piece in enumerate(_BREAK_SPLIT.split(token)):
                if i > 0:
                    parts.append([BREAK[0], BREAK[1], True])
                parts.append([piece, 1.0, False])

    # Unclosed brackets apply to the end of the prompt, rounds first, as A1111 does (the
    # order matters only in the last float bit, but that keeps results comparable).
    for start in round_open:
        multiply_from(start, ROUND_MULTIPLIER)
    for start in square_open:
        multiply_from(start, SQUARE_MULTIPLIER)

    merged: list[tuple[str, float]] = []
    for fragment, frag_weight, brk in parts:
        if brk:
            merged.append(BREAK)
        elif not fragment:
            # Empty pieces (left around BREAK) carry no tokens; dropping them lets their
            # neighbours merge.
            continue
        elif merged and not is_break(merged[-1]) and merged[-1][1] == frag_weight:
            merged[-1] = (merged[-1][0] + fragment, frag_weight)
        else:
            merged.append((fragment, frag_weight))
    return merged or [("", 1.0)]


def is_break(fragment: tuple[str, float]) -> bool:
    """Whether a parsed fragment is the ``BREAK`` keyword."""
    return fragment == BREAK


# Emphasis an encoder without A1111 syntax would read as words: an explicit weight
# ``(word:1.3)`` or the ``BREAK`` keyword. Plain brackets are ordinary prose there.
_EXPLICIT_EMPHASIS = re.compile(r"\([^()]*:\s*[+-]?(?:\d+\.?\d*|\.\d+)\s*\)|\bBREAK\b")


def emphasis_mark(text: str) -> str | None:
    """The first explicit emphasis mark in ``text`` (a weight or ``BREAK``); None: none."""
    found = _EXPLICIT_EMPHASIS.search(text)
    return found.group(0) if found else None
