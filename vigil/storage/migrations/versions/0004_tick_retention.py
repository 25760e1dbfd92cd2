"""Ticks by status and scheduled time: the daemon purges old ticks by that pair.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_ticks_status_scheduled_time"), "ticks", ["status", "scheduled_time"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ticks_status_scheduled_time"), table_name="ticks")
