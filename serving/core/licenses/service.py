"""Per-image licenses: bought with credits, one per asset, perpetual and worldwide.

    license, charged = licenses.purchase(tenant_id, asset_id, price)   # charged == price
    license, charged = licenses.purchase(tenant_id, asset_id, price)   # again: charged == 0

The spend (a ``license_purchase`` ledger entry) and the license row commit in one
transaction; the unique ``asset_id`` of ``licenses`` lets only one of two racing purchases
commit, the other rolls back its spend and answers the winner's license. Only style-kind
assets need a license (``LicenseNotRequired`` for base and agentic ones: they are free).
A license outlives the deletion of its asset: the certificate names the asset's SHA-256.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from serving.core.assets.service import Assets
from serving.core.errors import KilnError
from serving.core.ledger import Ledger
from serving.core.ledger.ledger import as_utc
from serving.core.ledger.schema import licenses
from serving.core.pagination import newest_first
from weights.catalog import UNSPECIFIED_TERMS, ProviderTerms

# What a license grants (DESIGN.md §1), stored with each license as it was when bought.
RIGHTS = (
    "perpetual, worldwide, non-exclusive right to use, reproduce, modify, distribute and "
    "display the image, including for commercial purposes",
    "download of the original without the visible watermark",
    "download up to 8K (upscaled)",
    "SVG vector export",
    "background removal",
)


class LicenseNotRequired(KilnError):
    """A purchase for a base or agentic asset, whose original is already free (400).

    DESIGN.md §1's rule for base images — commercial use subject to the model provider's
    terms — reads the terms the asset recorded (``ProviderTerms``, the catalog entry's when
    it was made), so the answer says what the provider states; agentic images are free
    for commercial use."""

    def __init__(self, asset_id: str, kind: str, terms: ProviderTerms | None) -> None:
        message = f"asset {asset_id!r} is a {kind} image: it is free to download"
        if kind == "base":
            message += f", no license is sold for it; {provider_terms_note(terms)}"
        else:
            message += " and use, no license is sold for it"
        super().__init__(400, message, code="license_not_required")
        self.asset_id = asset_id
        self.terms = terms


def provider_terms_note(terms: ProviderTerms | None) -> str:
    """What a base image's commercial use is subject to, from its recorded terms."""
    subject = "commercial use is subject to its model provider's terms"
    if terms is None:
        return f"{subject} (not recorded for it)"
    if terms == UNSPECIFIED_TERMS:
        return f"{subject}, which its catalog entry does not state"
    outputs = "allowed" if terms.commercial_outputs else "not allowed"
    where = f" ({terms.license_url})" if terms.license_url else ""
    return (
        f"{subject}, {terms.license_id}{where}: commercial use of outputs {outputs} as the "
        "provider states them"
    )


class UnknownLicense(KilnError):
    """No license with this id for this tenant (404 ``license_not_found``)."""

    def __init__(self, license_id: str) -> None:
        super().__init__(404, f"no license {license_id!r}", code="license_not_found")
        self.license_id = license_id


@dataclass(frozen=True)
class License:
    """A license certificate's contents."""

    id: str
    tenant_id: str
    asset_id: str
    asset_sha256: str
    price: int
    rights: tuple[str, ...]
    created: datetime


class Licenses:
    """Purchases and listings of licenses, scoped to a tenant."""

    def __init__(self, ledger: Ledger, assets: Assets) -> None:
        self.ledger = ledger
        self.assets = assets
        self.engine: Engine = ledger.engine

    def purchase(self, tenant_id: str, asset_id: str, price: int) -> tuple[License, int]:
        """The tenant's license for ``asset_id`` and the credits this call charged: the
        price the first time, 0 when the license exists. Raises ``UnknownAsset``,
        ``LicenseNotRequired`` or ``InsufficientCredits`` (nothing charged)."""
        asset = self.assets.get(tenant_id, asset_id)
        if not asset.license_required:
            raise LicenseNotRequired(asset_id, asset.kind, asset.terms)
        existing = self._for_asset(tenant_id, asset_id)
        if existing is not None:
            return existing, 0
        license = License(
            id=f"lic_{secrets.token_hex(12)}",
            tenant_id=tenant_id,
            asset_id=asset_id,
            asset_sha256=asset.sha256,
            price=price,
            rights=RIGHTS,
            created=datetime.now(UTC),
        )
        try:
            with self.engine.begin() as conn:
                entry_id = None
                if price > 0:
                    entry = self.ledger.purchase_in(conn, tenant_id, price, f"license:{asset_id}")
                    entry_id = entry.id
                _insert(conn, license, entry_id)
        except IntegrityError:
            # A concurrent purchase of the same asset committed first; ours rolled back.
            winner = self._for_asset(tenant_id, asset_id)
            if winner is None:
                raise
            return winner, 0
        return license, price

    def grant_derived(self, tenant_id: str, asset_id: str, parent_id: str) -> License:
        """License ``asset_id`` at no charge because it was derived (upscale, cut-out)
        from the licensed ``parent_id``: the rights bought cover what is made of it.
        ``UnknownLicense`` if the parent holds none."""
        parent = self._for_asset(tenant_id, parent_id)
        if parent is None:
            raise UnknownLicense(f"license of {parent_id}")
        existing = self._for_asset(tenant_id, asset_id)
        if existing is not None:
            return existing
        asset = self.assets.get(tenant_id, asset_id)
        license = License(
            id=f"lic_{secrets.token_hex(12)}",
            tenant_id=tenant_id,
            asset_id=asset_id,
            asset_sha256=asset.sha256,
            price=0,
            rights=parent.rights,
            created=datetime.now(UTC),
        )
        with self.engine.begin() as conn:
            _insert(conn, license, entry_id=None)
        return license

    def get(self, tenant_id: str, license_id: str) -> License:
        """The caller's license ``license_id``; ``UnknownLicense`` for any other."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(licenses).where(
                    licenses.c.id == license_id, licenses.c.tenant_id == tenant_id
                )
            ).one_or_none()
        if row is None:
            raise UnknownLicense(license_id)
        return _license(row._mapping)

    def list(
        self, tenant_id: str, limit: int = 20, after: str | None = None
    ) -> tuple[list[License], bool]:
        """The caller's licenses, newest first, and whether more follow (``after``: the
        last id of the previous page; ``UnknownCursor`` if it is not the caller's)."""
        query = select(licenses).where(licenses.c.tenant_id == tenant_id)
        with self.engine.begin() as conn:
            rows, more = newest_first(conn, licenses, query, tenant_id, limit, after)
        return [_license(row._mapping) for row in rows], more

    def _for_asset(self, tenant_id: str, asset_id: str) -> License | None:
        with self.engine.begin() as conn:
            row = conn.execute(
                select(licenses).where(
                    licenses.c.asset_id == asset_id, licenses.c.tenant_id == tenant_id
                )
            ).one_or_none()
        return None if row is None else _license(row._mapping)


def _license(row: Any) -> License:
    return License(
        id=row["id"],
        tenant_id=row["tenant_id"],
        asset_id=row["asset_id"],
        asset_sha256=row["asset_sha256"],
        price=row["price"],
        rights=tuple(json.loads(row["rights"])),
        created=as_utc(row["created"]),
    )


def _insert(conn: Any, license: License, entry_id: int | None) -> None:
    """The row of ``license`` (``entry_id``: the ledger entry that paid for it, if any)."""
    conn.execute(
        insert(licenses).values(
            id=license.id,
            tenant_id=license.tenant_id,
            asset_id=license.asset_id,
            asset_sha256=license.asset_sha256,
            price=license.price,
            entry_id=entry_id,
            rights=json.dumps(list(license.rights)),
            created=license.created,
        )
    )
