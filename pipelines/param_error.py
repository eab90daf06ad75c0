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
    """``value``, unless it holds a NUL character: then ``ParamError`` naming ``param``.

    Prompts, names and words are stored as text, and PostgreSQL's text columns cannot
    hold NUL (0x00): the write would fail, after the model call for a prompt, as a 500.
    No tokenizer, file name or label needs one, so it is refused up front on either
    database."""
    if "\x00" in value:
        raise ParamError(param, f"{param} must not contain NUL characters (\\u0000)")
    return value
