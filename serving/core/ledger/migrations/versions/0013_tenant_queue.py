"""A tenant's weight and queued-images quota in the models' fair queues (issue 23).

Revision ID: 0013_tenant_queue
Revises: 0012_pin_pictures
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_tenant_queue"
down_revision = "0012_pin_pictures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_queue",
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("max_queued_images", sa.Integer(), nullable=True),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("weight > 0", name=op.f("ck_tenant_queue_weight_positive")),
        sa.CheckConstraint(
            "max_queued_images >= 1", name=op.f("ck_tenant_queue_max_queued_images_positive")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_queue_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_queue")),
    )


def downgrade() -> None:
    op.drop_table("tenant_queue")
