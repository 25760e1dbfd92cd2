"""The initial store: runs, tags, event log, instigators, ticks, daemon heartbeats.

Revision ID: 0001
Revises:
Create Date: 2025-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    _create_runs()
    _create_run_tags()
    _create_event_log()
    _create_instigators_and_ticks()
    _create_daemon_heartbeats()


def downgrade() -> None:
    for table in (
        "daemon_heartbeats",
        "ticks",
        "instigator_state",
        "event_log",
        "run_tags",
        "runs",
    ):
        op.drop_table(table)


def _create_runs() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("job_name", sa.String(255), nullable=False),
        sa.Column("code_location", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("run_config", sa.JSON(), nullable=False),
        sa.Column("step_selection", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("parent_run_id", sa.String(64), nullable=True),
        sa.Column("root_run_id", sa.String(64), nullable=True),
        sa.Column("retry_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("start_time", sa.Double(), nullable=True),
        sa.Column("end_time", sa.Double(), nullable=True),
        sa.Column("worker_host", sa.String(255), nullable=True),
        sa.Column("worker_pid", sa.Integer(), nullable=True),
        sa.Column("launcher_info", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_status"), "runs", ["status"])
    op.create_index(op.f("ix_runs_root_run_id"), "runs", ["root_run_id"])
    op.create_index(op.f("ix_runs_created_at"), "runs", ["created_at"])
    op.create_index(op.f("ix_runs_job_name_created_at"), "runs", ["job_name", "created_at"])


def _create_run_tags() -> None:
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.run_id"],
            name=op.f("fk_run_tags_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_run_tags")),
    )
    op.create_index(op.f("ix_run_tags_key_value"), "run_tags", ["key", "value"])


def _create_event_log() -> None:
    op.create_table(
        "event_log",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("step", sa.String(255), nullable=True),
        sa.Column("level", sa.String(16), nullable=True),
        sa.Column("timestamp", sa.Double(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_log")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_event_log_event_type"), "event_log", ["event_type"])
    op.create_index(op.f("ix_event_log_run_id_id"), "event_log", ["run_id", "id"])


def _create_instigators_and_ticks() -> None:
    op.create_table(
        "instigator_state",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_instigator_state")),
    )
    op.create_table(
        "ticks",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("instigator", sa.String(255), nullable=False),
        sa.Column("scheduled_time", sa.Double(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticks")),
        sa.UniqueConstraint(
            "instigator", "scheduled_time", name=op.f("uq_ticks_instigator_scheduled_time")
        ),
    )
    op.create_index(op.f("ix_ticks_instigator"), "ticks", ["instigator"])


def _create_daemon_heartbeats() -> None:
    op.create_table(
        "daemon_heartbeats",
        sa.Column("daemon_id", sa.String(64), nullable=False),
        sa.Column("loop", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("last_heartbeat", sa.Double(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("daemon_id", "loop", name=op.f("pk_daemon_heartbeats")),
    )
