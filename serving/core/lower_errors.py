"""The lower layers' errors as the core's ``KilnError`` values: one short table.

Pipelines, weights and styles know nothing of serving, so their errors cannot subclass
``KilnError``; this module says what each means to a client. Anything that is neither a
``KilnError`` nor in the table is a 500 that tells nothing (its detail goes to the log of
whoever caught it). It is not ``serving.core.errors`` itself because that module stays
a leaf the Serve proxy imports without pipelines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DataError

from pipelines.oom import RETRY_AFTER_S as OOM_RETRY_AFTER_S
from pipelines.oom import OutOfGpuMemory
from pipelines.params import ParamError
from serving.core.errors import KilnError, internal_error, service_unavailable
from styles.lora_file import StyleFileError, StyleFileTooLarge
from weights.catalog import CatalogError, UnknownModelError

logger = logging.getLogger(__name__)


def _catalog_error(exc: CatalogError) -> KilnError:
    # A broken catalog entry is the operator's to fix, not the client's to read.
    logger.error("catalog error while serving: %s", exc)
    return internal_error()


def _client_text(message: str) -> KilnError:
    return KilnError(400, f"text in the request {message}", code="invalid_value")


def _data_error(exc: DataError) -> KilnError:
    # PostgreSQL refuses NUL (0x00) in any text parameter, a lookup's too: an id in a path
    # or query ("%00"), a field no check of ours names. The client's text, so a 400; any
    # other DataError stays a 500 (a value out of range is ours to have refused first).
    if "NUL" in str(exc.orig):
        return _client_text("must not contain NUL characters (\\u0000)")
    return internal_error()


def _unicode_encode_error(exc: UnicodeEncodeError) -> KilnError:
    # A lone surrogate (JSON's "\\ud800") in text no check of ours names, an id looked up:
    # the client's, so a 400. Any other failure to encode stays a 500.
    if exc.reason == "surrogates not allowed":
        return _client_text("must be Unicode: it holds a lone surrogate")
    return internal_error()


# By exception type; the most derived type of an error's class that is listed wins.
TRANSLATIONS: dict[type[BaseException], Callable[[Any], KilnError]] = {
    ParamError: lambda e: KilnError(400, str(e), param=e.param, code="invalid_value"),
    UnknownModelError: lambda e: KilnError(404, str(e), param="model", code="model_not_found"),
    # Over HTTP the body guard cuts such a file as it streams, with the same answer.
    StyleFileTooLarge: lambda e: KilnError(413, str(e), param=e.param, code="upload_too_large"),
    StyleFileError: lambda e: KilnError(400, str(e), param=e.param, code="invalid_style_file"),
    # The card is full right now (other work, fragmentation): a retry may fit.
    OutOfGpuMemory: lambda e: service_unavailable(
        f"{e}; retry later", OOM_RETRY_AFTER_S, code="out_of_memory"
    ),
    CatalogError: _catalog_error,
    DataError: _data_error,
    UnicodeEncodeError: _unicode_encode_error,
}

# The lower layers' error types the table answers (an adapter registers them).
LOWER_ERROR_TYPES: tuple[type[BaseException], ...] = tuple(TRANSLATIONS)


def kiln_error_for(exc: BaseException) -> KilnError:
    """The error a client is told for ``exc``: itself for a ``KilnError``, the table's
    translation for a lower layer's error, else a 500 that tells nothing."""
    if isinstance(exc, KilnError):
        return exc
    for cls in type(exc).__mro__:
        translate = TRANSLATIONS.get(cls)
        if translate is not None:
            return translate(exc)
    return internal_error()
