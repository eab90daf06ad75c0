"""Per-tenant concurrency slots, counted in the database across ingress processes.

Revision ID: 0004_tenant_slots
Revises: 0003_assets_licenses
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_tenant_slots"
down_revision = "0003_assets_licenses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_slots",
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("slot >= 0", name=op.f("ck_tenant_slots_slot_not_negative")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_slots_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "slot", name=op.f("pk_tenant_slots")),
    )


def downgrade() -> None:
    op.drop_table("tenant_slots")
