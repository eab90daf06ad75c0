"""Who is calling. Accounts and API keys arrive in a later issue; the seam is here now.

Every ``/v1`` route but signed file URLs depends on ``current_tenant`` and passes the
result to its service, so key checks (401), tenant scoping and credit accounting drop in
by changing this one dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request


@dataclass(frozen=True)
class Tenant:
    """A studio account: its id scopes styles, assets and credits."""

    id: str


async def current_tenant(request: Request) -> Tenant | None:
    """The caller's tenant; ``None`` while the server has no accounts (everyone is anonymous)."""
    return None


# Route parameter type: ``tenant: TenantDep``.
TenantDep = Annotated[Tenant | None, Depends(current_tenant)]
