"""API key material: random keys with a recognisable prefix, and their hashes."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "kiln_"
# What listings show of a key: enough to tell keys apart, far too little to use one.
SHOWN_CHARS = 12


def generate_key() -> str:
    """A new random API key (``kiln_`` + 43 URL-safe characters, 256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The SHA-256 (hex) stored and looked up in place of the key.

    A plain hash suffices: keys are 256 random bits, so there is nothing to brute-force
    that a slow, salted hash would protect.
    """
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """The start of a key that listings show."""
    return key[:SHOWN_CHARS]
