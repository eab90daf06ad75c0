"""Cursor pages of a tenant's rows, newest first, as OpenAI's list endpoints page them:
``limit`` rows after the row ``after`` (the last id of the previous page), and whether
more follow. Ordered by ``(created, id)`` so rows created in the same instant keep a
stable order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, Table, and_, or_, select

from serving.core.errors import KilnError


class UnknownCursor(KilnError):
    """``after`` names no row of this tenant (400 on ``after``)."""

    def __init__(self, after: str) -> None:
        super().__init__(
            400,
            f"no {after!r} to page after: not one of your ids",
            param="after",
            code="invalid_value",
        )
        self.after = after


def newest_first(
    conn: Connection,
    table: Table,
    query: Select[Any],
    tenant_id: str,
    limit: int,
    after: str | None,
) -> tuple[list[Any], bool]:
    """Rows of ``query`` (already scoped to ``tenant_id``) for one page, and ``has_more``.

    Raises ``UnknownCursor`` when ``after`` is not one of the tenant's rows of ``table``.
    """
    if after is not None:
        anchor = conn.execute(
            select(table.c.created).where(table.c.id == after, table.c.tenant_id == tenant_id)
        ).one_or_none()
        if anchor is None:
            raise UnknownCursor(after)
        query = query.where(
            or_(
                table.c.created < anchor.created,
                and_(table.c.created == anchor.created, table.c.id < after),
            )
        )
    rows = conn.execute(
        query.order_by(table.c.created.desc(), table.c.id.desc()).limit(limit + 1)
    ).all()
    return rows[:limit], len(rows) > limit
