"""The error value every Kiln answer uses, in a leaf module that imports nothing of Kiln.

``KilnError`` carries status, message, the offending field (``param``), a code and extra
headers; ``body()`` is OpenAI's error object ``{"error": {"message", "type", "param",
"code"}}``. It lives here, apart from ``serving.http.errors`` (which maps every domain
exception), so that light processes — the Ray Serve HTTP proxy's body guard — can answer
in the same shape without importing the services.
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


@dataclass
class KilnError(Exception):
    """An error answer: status, message, the offending field (``param``) and a code."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

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


def too_many_requests(message: str, code: str, retry_after_s: float) -> KilnError:
    """A 429 with ``retry-after``: a cap of the caller's, or of this server, is full now
    and frees up on its own (a slot, a stream, a trace)."""
    retry = str(max(1, round(retry_after_s)))
    return KilnError(429, message, code=code, headers={"retry-after": retry})
