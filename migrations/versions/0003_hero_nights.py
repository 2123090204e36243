"""hero nights: the nightly job's record; a hero take's night, once per parent and night

Plain ALTERs, no batch: SQLite adds and drops this column and index in place, so an
embedded farm with takes upgrades without copying the takes table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 05:27:04.634427
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hero_nights",
        sa.Column("night", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("budget_gpu_hours", sa.Float(), nullable=False),
        sa.Column("estimated_gpu_hours", sa.Float(), nullable=False),
        sa.Column("planned", sa.Integer(), nullable=False),
        sa.Column("skipped_over_budget", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("night"),
    )
    op.add_column("takes", sa.Column("hero_night", sa.Date(), nullable=True))
    op.create_index("uq_takes_hero_night", "takes", ["hero_night", "parent_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_takes_hero_night", table_name="takes")
    op.drop_column("takes", "hero_night")
    op.drop_table("hero_nights")
