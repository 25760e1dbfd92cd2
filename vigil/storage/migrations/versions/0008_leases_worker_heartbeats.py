"""Leases for many daemons on one store, and run workers' heartbeats.

`daemon_leases`: each daemon's membership, renewed while it lives (its expiry is the expiry
of every unit it owns). `leases`: one row per unit of daemon work that has one owner at a
time (an instigator, a shard of the monitor's in-flight runs, a cursor): the owner's daemon
id and the fencing token, raised at every change of owner. `runs.worker_heartbeat`: when the run's
worker last proved it is alive, whatever the launcher.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "daemon_leases",
        sa.Column("daemon_id", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("daemon_id", name=op.f("pk_daemon_leases")),
    )
    op.create_table(
        "leases",
        sa.Column("unit", sa.String(512), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("unit", name=op.f("pk_leases")),
    )
    op.create_index(op.f("ix_leases_owner"), "leases", ["owner"], unique=False)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("worker_heartbeat", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("worker_heartbeat")
    op.drop_index(op.f("ix_leases_owner"), table_name="leases")
    op.drop_table("leases")
    op.drop_table("daemon_leases")
