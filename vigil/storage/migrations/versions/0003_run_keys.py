"""Run keys: a run may name what asked for it (an instigator) and a key unique within it.

A schedule tick, a sensor's request or a run retry names its run `(instigator, run_key)`;
the unique constraint makes a second submission of the same key fail, so a daemon that
dies halfway through submitting never submits twice after a restart. Runs that nobody
instigated leave both NULL (NULLs never collide in a unique constraint).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


# Plain ADD COLUMN and CREATE UNIQUE INDEX: no batch mode, since rebuilding `runs` on SQLite
# would drop it, and with it (ON DELETE CASCADE) every run's tags.
def upgrade() -> None:
    op.add_column("runs", sa.Column("instigator", sa.String(255), nullable=True))
    op.add_column("runs", sa.Column("run_key", sa.String(255), nullable=True))
    op.create_index(
        op.f("ix_runs_instigator_run_key"), "runs", ["instigator", "run_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_runs_instigator_run_key"), table_name="runs")
    op.drop_column("runs", "run_key")
    op.drop_column("runs", "instigator")
