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

    def __reduce__(self) -> tuple[type[ParamError], tuple[str, str]]:
        # Pickled by its two arguments: a replica's ParamError crosses to the HTTP process
        # (Ray pickles a task's exception), where the default (``args`` = the message
        # alone) could not rebuild it and the 400 became a 500.
        return type(self), (self.param, str(self))
