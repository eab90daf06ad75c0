"""Environment variables declared on the dataclass field they fill.

A field is the one declaration of its variable: the annotation is the type, the field's
default the default, and ``env_field`` adds the variable's name, the parser of its text
and what it does (kept in ``dataclasses.Field.metadata``). ``env_vars(cls)`` derives the
table from ``dataclasses.fields``: ``Settings.from_env`` reads the environment with it
and the README's configuration table is generated from it.

Here, in ``pipelines``, because the lowest layer that declares variables (the GPU fast
path, ``pipelines/fast_path.py``) may not import ``serving``; serving's own variables
are declared on ``Settings`` (``serving/core/settings.py``) with the same helper.

A parser takes the stripped text and returns the value, or raises ``ValueError`` saying
what it must be; the caller names the variable in its error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

# The keys env_field stores in a field's metadata.
ENV = "env"
PARSE = "parse"
HELP = "help"


@dataclass(frozen=True)
class EnvVar:
    """One environment variable: the field it fills, how to parse it, what it does."""

    name: str
    field: str
    parse: Callable[[str], Any]
    help: str


def env_field(
    name: str,
    default: Any = MISSING,
    *,
    parse: Callable[[str], Any],
    help: str,
    default_factory: Callable[[], Any] | Any = MISSING,
    repr: bool = True,
) -> Any:
    """A dataclass field filled from the environment variable ``name``.

    Unset (or empty) keeps ``default``; ``repr=False`` keeps a secret out of logs.
    """
    metadata = {ENV: name, PARSE: parse, HELP: help}
    return field(default=default, default_factory=default_factory, repr=repr, metadata=metadata)


def env_vars(cls: type) -> tuple[EnvVar, ...]:
    """The variables of ``cls``'s fields declared with ``env_field``, in field order."""
    return tuple(
        EnvVar(f.metadata[ENV], f.name, f.metadata[PARSE], f.metadata[HELP])
        for f in fields(cls)
        if ENV in f.metadata
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be positive, got {value}")
    return value


def path(text: str) -> Path:
    """A file or folder; ``~`` is the user's home."""
    return Path(text).expanduser()


FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True}
FLAG_WORDS |= {"0": False, "false": False, "no": False, "off": False}


def flag(text: str) -> bool:
    """An on/off switch: 1/true/yes/on or 0/false/no/off (any case)."""
    try:
        return FLAG_WORDS[text.lower()]
    except KeyError:
        words = ", ".join(FLAG_WORDS)
        raise ValueError(f"must be one of {words}; got {text!r}") from None
