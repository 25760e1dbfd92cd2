"""The instance settings models: what `vigil.yaml` may say, frozen once validated.

Every number has bounds an operator would find generous and a typo would not pass
(`heartbeat_interval: 1e308` is refused, so are inf and nan): the types below carry them,
and the plugins' own options use them too.
"""

from __future__ import annotations

import pathlib
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from vigil import blobs
from vigil.config import limits

MINUTE = limits.MINUTE
HOUR = limits.HOUR
DAY = limits.DAY
MIN_INTERVAL = limits.MIN_INTERVAL
MAX_HEARTBEAT_INTERVAL = limits.MAX_HEARTBEAT_INTERVAL
MAX_COUNT = limits.MAX_COUNT

# Seconds between two looks, and how long something may take: 0.01 s to a day.
Interval = Annotated[float, Field(ge=MIN_INTERVAL, le=DAY, allow_inf_nan=False)]
# A wait that may be zero (a grace, a delay): up to a day.
Delay = Annotated[float, Field(ge=0, le=DAY, allow_inf_nan=False)]
# How long something is kept: a minute to ten years (in seconds).
Keep = Annotated[float, Field(ge=MINUTE, le=3650 * DAY, allow_inf_nan=False)]
# A multiplier between two backoff delays, and the fraction of a delay that is jitter.
Factor = Annotated[float, Field(ge=1, le=100, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
PositiveCount = Annotated[int, Field(ge=1, le=MAX_COUNT)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PostgresSettings(_Section):
    """PostgreSQL connection parts; the password comes from the env or a secret file."""

    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    user: str = "vigil"
    database: str = "vigil"
    password: SecretStr | None = None
    password_file: pathlib.Path | None = None
    pool_size: int = Field(default=5, ge=1, le=1000)
    max_overflow: int = Field(default=10, ge=0, le=1000)
    connect_timeout: Interval = 10.0


class StoreSettings(_Section):
    """Where the instance store lives: embedded SQLite (default) or PostgreSQL."""

    kind: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: pathlib.Path | None = None
    busy_timeout: Interval = 30.0
    postgres: PostgresSettings = PostgresSettings()


class PluginSettings(_Section):
    """A pluggable class: a built-in short name or `module:Class`, and its options."""

    type: str
    options: dict[str, Any] = Field(default_factory=dict)


class CodeLocationSettings(_Section):
    """One code location: a module to import or a file to load, exposing `Definitions`."""

    name: str | None = None
    module: str | None = None
    file: pathlib.Path | None = None
    attribute: str | None = None
    working_directory: pathlib.Path | None = None

    @pydantic.model_validator(mode="after")
    def _exactly_one_source(self) -> CodeLocationSettings:
        if (self.module is None) == (self.file is None):
            raise ValueError("give exactly one of 'module' or 'file'")
        return self

    @property
    def location_name(self) -> str:
        if self.name:
            return self.name
        if self.module:
            return self.module
        assert self.file is not None
        return self.file.stem


class HttpSettings(_Section):
    """The daemon's HTTP server for machines: /metrics, /healthz, /readyz."""

    enabled: bool = True
    host: str = "127.0.0.1"  # loopback unless configured otherwise (0.0.0.0 in the image)
    port: int = Field(default=9464, ge=0, le=65535)  # 0 picks a free port (tests)


class BackoffSettings(_Section):
    """Capped exponential backoff with jitter: base * factor**(n-1), at most cap, ± jitter."""

    base: Delay = 1.0
    factor: Factor = 2.0
    cap: Interval = 60.0
    jitter: Fraction = 0.1


class DaemonSettings(_Section):
    """The daemon: heartbeats, shutdown, loop restarts, and extra loops by `module:Class`."""

    heartbeat_interval: float = Field(
        default=5.0, ge=MIN_INTERVAL, le=MAX_HEARTBEAT_INTERVAL, allow_inf_nan=False
    )
    heartbeat_retention: Keep = 7 * DAY
    shutdown_grace: Delay = 30.0
    restart_backoff: BackoffSettings = BackoffSettings()
    loops: tuple[PluginSettings, ...] = ()
    # The least level of the daemon's log lines (`vigil daemon run --log-level` overrides it).
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Many daemons on one PostgreSQL store: a daemon's leases (its schedules, sensors, monitor
    # shards, cursors) outlive its last renewal by `lease_ttl` seconds (it renews 4 times per
    # TTL), then the others take them over; the monitor's in-flight runs are split into
    # `monitor_shards` shards, each owned by one daemon.
    lease_ttl: float = Field(default=10.0, ge=1.0, le=600.0, allow_inf_nan=False)
    monitor_shards: int = Field(default=16, ge=1, le=1024)

    @pydantic.model_validator(mode="after")
    def _live_heartbeats_are_kept(self) -> DaemonSettings:
        if self.heartbeat_retention < 3 * self.heartbeat_interval:
            raise ValueError(
                "heartbeat_retention must be at least 3 heartbeat intervals, or a live "
                "daemon's heartbeats could be deleted"
            )
        return self


class RetentionSettings(_Section):
    """How long ticks are kept: skipped ones (and missed) and the others, in days."""

    skipped_days: float = Field(default=7.0, ge=0.01, le=3650, allow_inf_nan=False)
    other_days: float = Field(default=90.0, ge=0.01, le=3650, allow_inf_nan=False)
    purge_interval: Interval = HOUR


# How long an ended run is kept, in days (None: for ever).
KeepDays = Annotated[float | None, Field(ge=0.01, le=3650, allow_inf_nan=False)]


class RunRetentionSettings(_Section):
    """How long ended runs are kept, with their events, tags, compute logs and outputs: days
    since the run ended, by its end status; None keeps them (the default: nothing is
    deleted unless an operator asks). The daemon purges `batch_size` runs per transaction."""

    enabled: bool = True
    success_days: KeepDays = None
    failure_days: KeepDays = None
    canceled_days: KeepDays = None
    batch_size: int = Field(default=500, ge=1, le=10_000)
    purge_interval: Interval = HOUR


class SchedulingSettings(_Section):
    """The daemon's scheduler and sensor loops and their evaluation processes."""

    enabled: bool = True
    max_concurrent_evaluations: int = Field(default=8, ge=1, le=1000)
    processes_per_location: int = Field(default=1, ge=1, le=64)
    # How often the loops re-read the instigators' states (an operator's start or stop).
    poll_interval: Interval = 5.0
    # With catchup: none, a tick this many seconds late still runs.
    catchup_grace: Delay = 60.0
    # A code location that failed to load is loaded again after this many seconds.
    load_retry: Interval = 30.0
    # A code location that takes longer than this to import is killed: its load failed.
    load_timeout: float = Field(default=120.0, gt=0, le=3600, allow_inf_nan=False)
    retention: RetentionSettings = RetentionSettings()


class RunMonitoringSettings(_Section):
    """The daemon's run monitor: no run stays STARTING, STARTED or CANCELING forever."""

    enabled: bool = True
    poll_interval: Interval = 10.0
    start_timeout: Interval = 120.0
    cancel_timeout: Interval = 120.0
    max_resume_attempts: int = Field(default=1, ge=0, le=100)
    unknown_grace: Delay = 600.0
    # A run may take long: up to 30 days.
    max_runtime: float | None = Field(default=None, ge=1, le=30 * DAY, allow_inf_nan=False)
    health_check_timeout: Interval = 10.0
    max_concurrent_checks: int = Field(default=16, ge=1, le=1000)


class RetryDelaySettings(_Section):
    """The wait before retry n: initial * factor**(n-1), at most max, ± jitter."""

    initial: Delay = 0.0
    factor: Factor = 2.0
    max: Delay = 600.0
    jitter: Fraction = 0.1


class RunRetriesSettings(_Section):
    """The daemon's run retries: a failed run gets a child run while retries remain."""

    enabled: bool = True
    poll_interval: Interval = 2.0
    max_retries: int = Field(default=0, ge=0, le=1000)
    retry_on_step_failure: bool = True
    strategy: Literal["from_failure", "all_steps"] = "from_failure"
    delay: RetryDelaySettings = RetryDelaySettings()
    retry_canceled: bool = False
    retry_max_runtime: bool = False
    max_age: Keep = DAY  # older run ends are never retried


class BackfillSettings(_Section):
    """The daemon's backfill loop: submits each backfill's runs to the queue in chunks."""

    enabled: bool = True
    poll_interval: Interval = 2.0
    chunk_size: int = Field(default=500, ge=1, le=10_000)  # runs per transaction


class RunWorkerSettings(_Section):
    """The run worker: how long it rides out a store it cannot reach before giving up."""

    store_outage_timeout: Interval = 600.0


class InstanceSettings(BaseSettings):
    """The whole instance: read from vigil.yaml, overridden by VIGIL_* env variables."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIL_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    home: pathlib.Path = pathlib.Path(".vigil")
    store: StoreSettings = StoreSettings()
    # A path, a file:// URL or any fsspec URL (s3://..., gs://...): see vigil.blobs.
    logs_dir: str | None = None
    storage_dir: str | None = None
    workspace: tuple[CodeLocationSettings, ...] = ()
    run_launcher: PluginSettings = PluginSettings(type="subprocess")
    run_coordinator: PluginSettings = PluginSettings(type="queued")
    executor: PluginSettings = PluginSettings(type="multiprocess")
    daemon: DaemonSettings = DaemonSettings()
    http: HttpSettings = HttpSettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    run_monitoring: RunMonitoringSettings = RunMonitoringSettings()
    run_retries: RunRetriesSettings = RunRetriesSettings()
    backfills: BackfillSettings = BackfillSettings()
    run_worker: RunWorkerSettings = RunWorkerSettings()
    retention: RunRetentionSettings = RunRetentionSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)

    @property
    def sqlite_path(self) -> pathlib.Path:
        return self.store.sqlite_path or self.home / "vigil.db"

    @property
    def compute_logs_url(self) -> str:
        """Where compute logs are kept: `logs_dir`, a path or a URL."""
        return self.logs_dir or str(self.home / "logs")

    @property
    def compute_logs_dir(self) -> pathlib.Path:
        """Where this machine writes compute logs: `logs_dir` when it is local; else
        `HOME/logs`, from which each step's logs are uploaded to `logs_dir`."""
        return blobs.local_path(self.compute_logs_url) or self.home / "logs"

    @property
    def outputs_url(self) -> str:
        """Where step outputs are kept: `storage_dir`, a path or a URL."""
        return self.storage_dir or str(self.home / "storage")
