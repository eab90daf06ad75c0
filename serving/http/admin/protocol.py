"""Wire shapes of the admin routes: tenants, their keys, credit grants."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.core.accounts import ApiKey, IssuedKey


class CreateTenantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)


class TenantResponse(BaseModel):
    object: str = "tenant"
    id: str
    name: str
    created: datetime


class CreateKeyRequest(BaseModel):
    """Optional body of a key request: ``role`` defaults to a tenant key."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["tenant", "admin"] = "tenant"


class KeyInfo(BaseModel):
    """A key as listed: its prefix, never the key."""

    object: str = "api_key"
    id: str
    tenant_id: str
    prefix: str
    role: str
    created: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, key: ApiKey) -> KeyInfo:
        return cls.model_validate(key, from_attributes=True)


class CreatedKey(KeyInfo):
    """A new key: ``key`` is shown this once and stored only as a hash."""

    key: str

    @classmethod
    def from_issued(cls, issued: IssuedKey) -> CreatedKey:
        return cls(key=issued.key, **KeyInfo.of(issued.record).model_dump())


class KeyList(BaseModel):
    object: str = "list"
    data: list[KeyInfo]


class GrantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    amount: int = Field(gt=0, description="whole credits to add")


class BalanceResponse(BaseModel):
    object: str = "balance"
    tenant_id: str
    balance: int
    held: int


class TenantQueueRequest(BaseModel):
    """A tenant's place in the models' fair queues: its weight in the deficit round robin
    (0.01-100; omitted keeps it) and its own queued-images quota (at least 1; omitted or
    null: the server's ``KILN_TENANT_MAX_QUEUED_IMAGES``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    weight: float | None = None
    max_queued_images: int | None = None


class TenantQueueResponse(BaseModel):
    """The settings in force: the weight, and the quota (own or the server's; null: none)."""

    object: str = "tenant_queue"
    tenant_id: str
    weight: float
    max_queued_images: int | None
