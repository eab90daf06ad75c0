"""Reading the caller's credentials from a request's headers: the one reader.

Both the body guard (``serving.http.body_guard``, at the Serve proxy and in the app, before
any body byte is read) and the routes' ``current_tenant`` dependency call
``api_key_from``, so a key is found the same way everywhere. Today a key travels as
``Authorization: Bearer <key>``; a route that later accepts HTTP Basic (the key as the
password) extends this function, not its callers.
"""

from __future__ import annotations

from serving.core.errors import KilnError

# Where the body guard leaves the principal it authenticated (``request.state``), so the
# route's dependency does not look the key up a second time.
PRINCIPAL_STATE = "kiln_principal"


def unauthorized(message: str, code: str) -> KilnError:
    """A 401 in the error shape, with the challenge HTTP asks for."""
    return KilnError(401, message, code=code, headers={"www-authenticate": "Bearer"})


def api_key_from(authorization: str | None) -> str:
    """The API key in an ``Authorization`` header's value; 401 when missing or malformed."""
    if not authorization:
        raise unauthorized("missing API key: send 'Authorization: Bearer <key>'", "missing_api_key")
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise unauthorized("malformed Authorization header: use 'Bearer <key>'", "invalid_api_key")
    return key


def invalid_key() -> KilnError:
    """The 401 for a key that is unknown or revoked."""
    return unauthorized("invalid or revoked API key", "invalid_api_key")
