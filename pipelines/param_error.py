"""``ParamError``: an invalid request field, by name (serving answers it with a 400 naming
the field). Its own module because the model families raise it (a prompt past a text
encoder's limit) and ``pipelines.params`` imports the families: neither may import the
other both ways. ``check_text``: the one rule for text Kiln stores as it was given."""

from __future__ import annotations


class ParamError(ValueError):
    """An invalid generation parameter; ``param`` names the request field."""

    def __init__(self, param: str, message: str):
        self.param = param
        super().__init__(message)

    def __reduce__(self) -> tuple[type[ParamError], tuple[str, str]]:
        # Pickled by its two arguments: a replica's ParamError crosses to the HTTP process
        # (Ray pickles a task's exception), where the default (``args`` = the message
        # alone) could not rebuild it and the 400 became a 500.
        return type(self), (self.param, str(self))


def check_text(param: str, value: str) -> str:
    """``value``, unless it is text Kiln cannot pass on or store: then ``ParamError``
    naming ``param``.

    - A NUL character: prompts, names and words are stored as text, and PostgreSQL's
      text cannot hold NUL (0x00). The write would fail as a 500, after the model call
      for a prompt. No tokenizer, file name or label needs one, so it is refused up front
      on either database.
    - A lone surrogate (U+D800-U+DFFF, which JSON's ``\\ud800`` escape can carry): it is
      not Unicode text. The model call, SQLite and PostgreSQL all fail to encode it as
      UTF-8 (a 500, after the reservation)."""
    if "\x00" in value:
        raise ParamError(param, f"{param} must not contain NUL characters (\\u0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ParamError(
                param, f"{param} must be Unicode text: it holds a lone surrogate (\\ud800-\\udfff)"
            ) from None
    return value
