"""Launch tokens, claimers, resume attempts, due times and one retry number per lineage.

- `launch_token`: each claim of a run (and each re-launch or resume) writes a fresh token;
  a worker starts the run only with the token it was launched with, so of two workers of
  one run at most one ever touches it.
- `claimed_by`: who claimed the current launch (a daemon id, or `cli:...`), so that a
  claim whose claimer died before the launch is found and launched again.
- `launched_at`: when the current launch was recorded (NULL: claimed, not launched yet).
- `resume_attempt`: how many times the monitor gave the run a new worker (was a key of
  `launcher_info`); a resume is conditional on it.
- `not_before`: a run inserted ahead of time (a retry waiting out its delay) is not
  claimed before it.
- A unique index on (root_run_id, retry_number): a lineage numbers its runs once. Existing
  lineages with a repeated number (a manual re-execution and an automatic retry of one run
  used to both take the parent's number + 1) are renumbered in creation order first.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


# Plain ADD COLUMN (no batch mode: rebuilding `runs` on SQLite would cascade to its tags).
def upgrade() -> None:
    op.add_column("runs", sa.Column("launch_token", sa.String(64), nullable=True))
    op.add_column("runs", sa.Column("claimed_by", sa.String(64), nullable=True))
    op.add_column("runs", sa.Column("launched_at", sa.Double(), nullable=True))
    op.add_column(
        "runs",
        sa.Column("resume_attempt", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("runs", sa.Column("not_before", sa.Double(), nullable=True))
    _renumber_lineages()
    op.create_index(
        op.f("ix_runs_root_run_id_retry_number"),
        "runs",
        ["root_run_id", "retry_number"],
        unique=True,
    )


def _renumber_lineages() -> None:
    """Give the runs of each lineage with a repeated retry number 1, 2, ... by creation."""
    conn = op.get_bind()
    runs = sa.table(
        "runs",
        sa.column("run_id", sa.String),
        sa.column("root_run_id", sa.String),
        sa.column("retry_number", sa.Integer),
        sa.column("created_at", sa.Double),
    )
    repeated = (
        sa.select(runs.c.root_run_id)
        .where(runs.c.root_run_id.is_not(None))
        .group_by(runs.c.root_run_id, runs.c.retry_number)
        .having(sa.func.count() > 1)
    )
    for root in sorted({row[0] for row in conn.execute(repeated)}):
        children = conn.execute(
            sa.select(runs.c.run_id)
            .where(runs.c.root_run_id == root, runs.c.run_id != root)
            .order_by(runs.c.created_at, runs.c.run_id)
        ).scalars()
        for number, run_id in enumerate(list(children), start=1):
            conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(retry_number=number))


def downgrade() -> None:
    op.drop_index(op.f("ix_runs_root_run_id_retry_number"), table_name="runs")
    for column in ("not_before", "resume_attempt", "launched_at", "claimed_by", "launch_token"):
        op.drop_column("runs", column)
