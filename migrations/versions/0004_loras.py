"""LoRAs and presets: an asset's reading (a LoRA's format, rank, modules, fitting
checkpoints), a take's LoRAs and the preset it was made from, and what a worker's DiT holds
(its checkpoint and LoRA stack, for the release loop's affinity)

Plain ADD COLUMNs of nullable columns: SQLite adds them in place.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("assets", sa.Column("info", sa.JSON(), nullable=True))
    op.add_column("takes", sa.Column("loras", sa.JSON(), nullable=True))
    op.add_column("takes", sa.Column("preset", sa.String(length=100), nullable=True))
    op.add_column("workers", sa.Column("holding", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    op.drop_column("workers", "holding")
    op.drop_column("takes", "preset")
    op.drop_column("takes", "loras")
    op.drop_column("assets", "info")
