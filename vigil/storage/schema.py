"""The tables of the instance store, in SQLAlchemy Core.

This metadata is the source of truth the migrations must equal (a drift test checks it),
at `HEAD_REVISION`. Times are epoch seconds as doubles; JSON columns hold plain dicts and
lists.
"""

from __future__ import annotations

import sqlalchemy as sa

from vigil.storage import revision

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The revision of the newest migration: the schema this vigil expects. Kept here as a
# constant so opening a store needs no alembic; a test checks it equals alembic's head, so
# a new migration must update it (in `revision`, which the read commands' glance reads).
HEAD_REVISION = revision.HEAD

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# A BIGINT on PostgreSQL; an INTEGER (a rowid alias) on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("job_name", sa.String(255), nullable=False),
    sa.Column("code_location", sa.String(255), nullable=True),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("run_config", sa.JSON(), nullable=False),
    sa.Column("step_selection", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("parent_run_id", sa.String(64), nullable=True),
    sa.Column("root_run_id", sa.String(64), nullable=True, index=True),
    sa.Column("retry_number", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False, index=True),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.Column("start_time", sa.Double(), nullable=True),
    sa.Column("end_time", sa.Double(), nullable=True),
    sa.Column("worker_host", sa.String(255), nullable=True),
    sa.Column("worker_pid", sa.Integer(), nullable=True),
    sa.Column("launcher_info", sa.JSON(), nullable=False),
    # What asked for the run (a schedule, a sensor, the retry loop) and its key within it.
    sa.Column("instigator", sa.String(255), nullable=True),
    sa.Column("run_key", sa.String(255), nullable=True),
    # The current launch (migration 0005): its token (a worker starts the run only with
    # it), who claimed it, when it was recorded (NULL: claimed, not launched yet).
    sa.Column("launch_token", sa.String(64), nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("launched_at", sa.Double(), nullable=True),
    sa.Column("resume_attempt", sa.Integer(), nullable=False, server_default="0"),
    # A run inserted ahead of its time (a retry waiting out its delay) is not claimed before.
    sa.Column("not_before", sa.Double(), nullable=True),
    # When the run's worker last proved it is alive, whatever the launcher (migration 0008).
    sa.Column("worker_heartbeat", sa.Double(), nullable=True),
    sa.Index(None, "job_name", "created_at"),
    sa.Index(None, "instigator", "run_key", unique=True),
    sa.Index(None, "root_run_id", "retry_number", unique=True),
    # Retention purges ended runs by status and age (migration 0007).
    sa.Index(None, "status", "updated_at"),
)

run_tags = sa.Table(
    "run_tags",
    metadata,
    sa.Column(
        "run_id",
        sa.String(64),
        sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Index(None, "key", "value"),
)

event_log = sa.Table(
    "event_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False, index=True),
    sa.Column("step", sa.String(255), nullable=True),
    sa.Column("level", sa.String(16), nullable=True),
    sa.Column("timestamp", sa.Double(), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    # Serves both "a run's events by id" and "events of this run" lookups.
    sa.Index(None, "run_id", "id"),
    # Ids are never reused on SQLite, even after the newest rows are deleted: cursors hold.
    sqlite_autoincrement=True,
)

instigator_state = sa.Table(
    "instigator_state",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("cursor", sa.Text(), nullable=True),
    sa.Column("updated_at", sa.Double(), nullable=False),
)

ticks = sa.Table(
    "ticks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("instigator", sa.String(255), nullable=False, index=True),
    sa.Column("scheduled_time", sa.Double(), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("run_ids", sa.JSON(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("cursor", sa.Text(), nullable=True),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.UniqueConstraint("instigator", "scheduled_time"),
    # Retention purges by status and age (migration 0004).
    sa.Index(None, "status", "scheduled_time"),
)

daemon_heartbeats = sa.Table(
    "daemon_heartbeats",
    metadata,
    sa.Column("daemon_id", sa.String(64), primary_key=True),
    sa.Column("loop", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("last_heartbeat", sa.Double(), nullable=False),
    sa.Column("info", sa.JSON(), nullable=False),
)

# Instance-wide settings changed at run time (e.g. "queue.paused"), one JSON value each.
instance_flags = sa.Table(
    "instance_flags",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.JSON(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
)

# Backfills (migration 0006): the partition keys they cover, in order, and how many of them
# have their run (`cursor`); their runs carry the tag `vigil/backfill`.
backfills = sa.Table(
    "backfills",
    metadata,
    sa.Column("backfill_id", sa.String(64), primary_key=True),
    sa.Column("job_name", sa.String(255), nullable=False),
    sa.Column("code_location", sa.String(255), nullable=True),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("partitions", sa.JSON(), nullable=False),
    sa.Column("total", sa.Integer(), nullable=False),
    sa.Column("cursor", sa.Integer(), nullable=False),
    sa.Column("run_config", sa.JSON(), nullable=False),
    sa.Column("tags", sa.JSON(), nullable=False),
    sa.Column("max_concurrent", sa.Integer(), nullable=True),
    sa.Column("rerun_of", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
)

# Runs purged whose files (compute logs, outputs) may remain (migration 0007): written with
# the purge of their rows, deleted once their files are gone (`vigil.retention`).
purged_runs = sa.Table(
    "purged_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("purged_at", sa.Double(), nullable=False),
)

# Leases (migration 0008). A daemon's membership (`daemon_leases`) is renewed while it lives;
# a unit of daemon work (`leases`: an instigator, a shard of the monitor's in-flight runs, a
# cursor) is owned by one daemon while that daemon's membership has not expired. `token`
# rises at every change of owner; every write of the unit's work checks it (fencing).
# `owner` NULL: released.
daemon_leases = sa.Table(
    "daemon_leases",
    metadata,
    sa.Column("daemon_id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("started_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("unit", sa.String(512), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=True, index=True),
    sa.Column("token", sa.BigInteger(), nullable=False),
    sa.Column("acquired_at", sa.Double(), nullable=False),
)
