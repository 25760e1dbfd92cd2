"""Backfills: one row per backfill, with its partition keys in order and a cursor.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "backfills",
        sa.Column("backfill_id", sa.String(64), nullable=False),
        sa.Column("job_name", sa.String(255), nullable=False),
        sa.Column("code_location", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("partitions", sa.JSON(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("run_config", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("rerun_of", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("backfill_id", name=op.f("pk_backfills")),
    )
    op.create_index(op.f("ix_backfills_status"), "backfills", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_backfills_status"), table_name="backfills")
    op.drop_table("backfills")
