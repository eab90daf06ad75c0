"""Tenants' API keys and the admin key, on the ledger's database.

Keys are random, shown once, stored only as SHA-256 hashes; a key carries a role
(``admin`` or ``tenant``) and belongs to one tenant. The admin is a tenant of its own.
"""

from serving.core.accounts.keys import KEY_PREFIX, generate_key, hash_key
from serving.core.accounts.service import (
    ADMIN_TENANT_ID,
    Accounts,
    ApiKey,
    IssuedKey,
    Principal,
    UnknownKey,
    ensure_admin_key,
    prepare_admin,
)

__all__ = [
    "ADMIN_TENANT_ID",
    "KEY_PREFIX",
    "Accounts",
    "ApiKey",
    "IssuedKey",
    "Principal",
    "UnknownKey",
    "ensure_admin_key",
    "prepare_admin",
    "generate_key",
    "hash_key",
]
