"""Run retention: runs by status and age, and the journal of purged runs' files.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_runs_status_updated_at"), "runs", ["status", "updated_at"], unique=False
    )
    op.create_table(
        "purged_runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("purged_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_purged_runs")),
    )


def downgrade() -> None:
    op.drop_table("purged_runs")
    op.drop_index(op.f("ix_runs_status_updated_at"), table_name="runs")
