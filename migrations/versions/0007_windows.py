"""long takes: the windows a take is rendering and has saved, the window an attempt started at

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 17:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("takes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress_windows", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("windows_saved", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("start_window", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("start_window")
    with op.batch_alter_table("takes", schema=None) as batch_op:
        batch_op.drop_column("windows_saved")
        batch_op.drop_column("progress_windows")
