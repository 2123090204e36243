"""Consent records: the records, their links to assets, the audit trail; an asset's "no real
person" declaration, a take's consent decision and withdrawal, a night's consent skips

New tables, and plain ADD COLUMNs of nullable (or defaulted) columns: SQLite adds them in place.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("covers", sa.String(length=16), nullable=False),
        sa.Column("uses", sa.JSON(), nullable=False),
        sa.Column("territories", sa.JSON(), nullable=False),
        sa.Column("downstream", sa.JSON(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("evidence_sha256", sa.String(length=64), sa.ForeignKey("assets.sha256"), nullable=False),
        sa.Column("evidence_kind", sa.String(length=16), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(length=100), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_consent_records_subject", "consent_records", ["subject"])
    op.create_table(
        "consent_links",
        sa.Column("asset_sha256", sa.String(length=64), sa.ForeignKey("assets.sha256"), primary_key=True),
        sa.Column("record_id", sa.String(length=32), sa.ForeignKey("consent_records.id"), primary_key=True),
        sa.Column("linked_by", sa.String(length=100), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_consent_links_record_id", "consent_links", ["record_id"])
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=32), sa.ForeignKey("consent_records.id"), nullable=True),
        sa.Column("asset_sha256", sa.String(length=64), nullable=True),
        sa.Column("take_id", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    for column in ("record_id", "asset_sha256", "take_id"):
        op.create_index(f"ix_consent_events_{column}", "consent_events", [column])
    op.add_column("assets", sa.Column("synthetic_by", sa.String(length=100), nullable=True))
    op.add_column("assets", sa.Column("synthetic_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("takes", sa.Column("consent", sa.JSON(), nullable=True))
    op.add_column("takes", sa.Column("consent_withdrawn", sa.Text(), nullable=True))
    op.add_column("hero_nights", sa.Column("skipped_consent", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("hero_nights") as batch:  # SQLite: DROP COLUMN via a table copy where needed
        batch.drop_column("skipped_consent")
    op.drop_column("takes", "consent_withdrawn")
    op.drop_column("takes", "consent")
    op.drop_column("assets", "synthetic_at")
    op.drop_column("assets", "synthetic_by")
    for column in ("record_id", "asset_sha256", "take_id"):
        op.drop_index(f"ix_consent_events_{column}", table_name="consent_events")
    op.drop_table("consent_events")
    op.drop_index("ix_consent_links_record_id", table_name="consent_links")
    op.drop_table("consent_links")
    op.drop_index("ix_consent_records_subject", table_name="consent_records")
    op.drop_table("consent_records")
