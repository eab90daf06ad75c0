"""The private-style quota: what a tenant's own imports may add to what it keeps.

``KILN_STYLE_IMPORTS_MAX`` styles and ``KILN_STYLE_IMPORTS_MAX_BYTES`` bytes a tenant.
Every private style of the tenant counts, imported or trained, each its file's full size
even where two styles share one file (sharing is the server's saving, not the tenant's);
artist styles never count, and deleting a style frees its share at once. Past the number
of styles the answer is 429, past the bytes 413, both ``style_quota_exceeded``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, select

from serving.core.errors import KilnError
from serving.core.ledger.schema import styles
from styles.record import StyleKind, style_file_path


class StyleQuotaExceeded(KilnError):
    """A tenant's own import past its quota: 429 for the number of styles, 413 for the
    bytes. ``x-should-retry: false``: waiting does not help, deleting a style does."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(
            status,
            message,
            param="file" if status == 413 else None,
            code="style_quota_exceeded",
            headers={"x-should-retry": "false"},
        )


@dataclass(frozen=True)
class StyleUsage:
    """A tenant's private styles and their files' bytes (each style its file's size)."""

    styles: int
    bytes: int


@dataclass(frozen=True)
class StyleQuota:
    """The most private styles, and bytes of them, a tenant's own imports may reach."""

    max_styles: int
    max_bytes: int

    def check(self, used: StyleUsage, size: int) -> None:
        """``StyleQuotaExceeded`` unless one more style of ``size`` bytes fits."""
        if used.styles >= self.max_styles:
            raise StyleQuotaExceeded(
                f"this tenant has {used.styles} private styles, the most it may import "
                f"(KILN_STYLE_IMPORTS_MAX={self.max_styles}); delete one to import another",
                status=429,
            )
        if used.bytes + size > self.max_bytes:
            raise StyleQuotaExceeded(
                f"this tenant's private styles hold {used.bytes} bytes; {size} more would "
                f"pass its quota of {self.max_bytes} (KILN_STYLE_IMPORTS_MAX_BYTES); "
                "delete a style to free its share",
                status=413,
            )


def usage_of(conn: Connection, styles_dir: Path, tenant_id: str) -> StyleUsage:
    """What ``tenant_id``'s private styles hold, read in the caller's transaction.

    Sizes come from the files (a row never names a missing file): no column to keep in
    step, and styles imported before the quota existed count as they are.
    """
    shas = (
        conn.execute(
            select(styles.c.sha256).where(
                styles.c.kind == StyleKind.PRIVATE, styles.c.owner_tenant_id == tenant_id
            )
        )
        .scalars()
        .all()
    )
    sizes: dict[str, int] = {}
    for sha256 in set(shas):
        try:
            sizes[sha256] = style_file_path(styles_dir, sha256).stat().st_size
        except FileNotFoundError:
            sizes[sha256] = 0
    return StyleUsage(styles=len(shas), bytes=sum(sizes[sha256] for sha256 in shas))
