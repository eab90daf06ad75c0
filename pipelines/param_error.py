"""``ParamError``: an invalid request field, by name (serving answers it with a 400 naming
the field). Its own module because the model families raise it (a prompt past a text
encoder's limit) and ``pipelines.params`` imports the families: neither may import the
other both ways."""

from __future__ import annotations


class ParamError(ValueError):
    """An invalid generation parameter; ``param`` names the request field."""

    def __init__(self, param: str, message: str):
        self.param = param
        super().__init__(message)
