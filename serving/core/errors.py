"""The error value every Kiln answer uses, in a leaf module that imports nothing of Kiln.

``KilnError`` carries status, message, the offending field (``param``), a code and extra
headers; ``body()`` is OpenAI's error object ``{"error": {"message", "type", "param",
"code"}}``. Every domain error of the core subclasses it where it is defined
(``UnknownAsset`` is a 404 ``asset_not_found`` in ``serving.core.assets.service``), so an
adapter maps the base type once and no module imports every exception. The lower
layers' errors (pipelines, weights, styles) cannot subclass a serving type: the core
translates them in ``serving.core.lower_errors``.

It stays a leaf so that light processes — the Ray Serve HTTP proxy's body guard — can
answer in the same shape without importing the services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REQUEST_ID_HEADER = "x-request-id"

# OpenAI's error types by status, so SDKs raise the matching exception class.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_credits",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


# ``eq=False``: an error compares (and hashes) by identity, as every exception does.
@dataclass(eq=False)
class KilnError(Exception):
    """An error answer: status, message, the offending field (``param``) and a code.

    Subclasses give their own ``__init__`` (the domain's arguments) and call this one
    with their status and code; ``str(error)`` is the message a client is shown.
    """

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Exception's own, not super()'s: a subclass may also derive from a lower
        # layer's error (UnsupportedImageFormat is a ParamError) with another signature.
        Exception.__init__(self, self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by state, not by constructor arguments (a subclass's differ): an error
        # raised in a Ray worker arrives whole in the process that asked.
        return (_rebuild, (type(self), self.__dict__.copy()))

    @property
    def type(self) -> str:
        return ERROR_TYPES.get(self.status, "server_error" if self.status >= 500 else "error")

    def body(self) -> dict[str, Any]:
        """The OpenAI error object."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def _rebuild(cls: type[KilnError], state: dict[str, Any]) -> KilnError:
    """A pickled ``KilnError`` (any subclass) back from its state."""
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error.message)
    return error


def not_found(message: str, code: str = "not_found") -> KilnError:
    """A 404 that says nothing about whether the thing exists for someone else."""
    return KilnError(404, message, code=code)


def internal_error() -> KilnError:
    """The 500 a client sees for anything unexpected: it tells nothing (see the log)."""
    return KilnError(500, "internal server error", code="internal_error")


def service_unavailable(
    message: str, retry_after_s: float = 1.0, code: str = "overloaded"
) -> KilnError:
    """A 503 with ``retry-after``: queues are full (``overloaded``), a model is loading
    (``model_loading``), not deployed here (``not_deployed``), its replica died under the
    request (``model_unavailable``) or out of memory now."""
    return KilnError(503, message, code=code, headers={"retry-after": _retry_after(retry_after_s)})


def model_unavailable(model_id: str, retry_after_s: float = 5.0) -> KilnError:
    """The 503 for a request whose model replica died under it (a GPU fault, an OOM kill,
    a lost node) and could not be served again: an expected fault, not a bug in Kiln, so
    a client retries after ``retry-after`` (a replacement replica is loading)."""
    return service_unavailable(
        f"the replica serving model {model_id!r} failed during the request; retry later",
        retry_after_s,
        code="model_unavailable",
    )


def too_many_requests(message: str, code: str, retry_after_s: float) -> KilnError:
    """A 429 with ``retry-after``: a cap of the caller's, or of this server, is full now
    and frees up on its own (a slot, a stream, a trace)."""
    return KilnError(429, message, code=code, headers={"retry-after": _retry_after(retry_after_s)})


def _retry_after(seconds: float) -> str:
    return str(max(1, round(seconds)))
