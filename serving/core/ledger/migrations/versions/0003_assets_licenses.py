"""Assets (stored images and how they were made) and per-image licenses.

Revision ID: 0003_assets_licenses
Revises: 0002_api_keys
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_assets_licenses"
down_revision = "0002_api_keys"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
KINDS = "kind IN ('base', 'artist_style', 'private_style', 'agentic')"


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("style", sa.String(200), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("negative_prompt", sa.Text(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("media_type", sa.String(40), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("preview_sha256", sa.String(64), nullable=False),
        sa.Column("invisible_watermark", sa.String(32), nullable=True),
        sa.Column("generation_id", sa.String(40), nullable=True),
        sa.Column("created", TZ, nullable=False),
        sa.CheckConstraint(KINDS, name=op.f("ck_assets_kind_known")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_assets_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
    )
    op.create_index("ix_assets_tenant_id_created", "assets", ["tenant_id", "created"])
    op.create_index(op.f("ix_assets_sha256"), "assets", ["sha256"])
    op.create_index(op.f("ix_assets_preview_sha256"), "assets", ["preview_sha256"])
    op.create_table(
        "licenses",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("asset_id", sa.String(40), nullable=False),
        sa.Column("asset_sha256", sa.String(64), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("rights", sa.Text(), nullable=False),
        sa.Column("created", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_licenses_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entries.id"], name=op.f("fk_licenses_entry_id_ledger_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licenses")),
        sa.UniqueConstraint("asset_id", name=op.f("uq_licenses_asset_id")),
    )
    op.create_index("ix_licenses_tenant_id_created", "licenses", ["tenant_id", "created"])


def downgrade() -> None:
    op.drop_index("ix_licenses_tenant_id_created", table_name="licenses")
    op.drop_table("licenses")
    op.drop_index(op.f("ix_assets_preview_sha256"), table_name="assets")
    op.drop_index(op.f("ix_assets_sha256"), table_name="assets")
    op.drop_index("ix_assets_tenant_id_created", table_name="assets")
    op.drop_table("assets")
