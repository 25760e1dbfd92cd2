"""The instance settings models: what `vigil.yaml` may say, frozen once validated."""

from __future__ import annotations

import pathlib
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PostgresSettings(_Section):
    """PostgreSQL connection parts; the password comes from the env or a secret file."""

    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    user: str = "vigil"
    database: str = "vigil"
    password: SecretStr | None = None
    password_file: pathlib.Path | None = None
    pool_size: int = Field(default=5, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    connect_timeout: float = Field(default=10.0, gt=0)


class StoreSettings(_Section):
    """Where the instance store lives: embedded SQLite (default) or PostgreSQL."""

    kind: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: pathlib.Path | None = None
    busy_timeout: float = Field(default=30.0, gt=0)
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

    base: float = Field(default=1.0, ge=0)
    factor: float = Field(default=2.0, ge=1)
    cap: float = Field(default=60.0, gt=0)
    jitter: float = Field(default=0.1, ge=0, le=1)


class DaemonSettings(_Section):
    """The daemon: heartbeats, shutdown, loop restarts, and extra loops by `module:Class`."""

    heartbeat_interval: float = Field(default=5.0, gt=0)
    heartbeat_retention: float = Field(default=7 * 24 * 3600.0, gt=0)
    shutdown_grace: float = Field(default=30.0, ge=0)
    restart_backoff: BackoffSettings = BackoffSettings()
    loops: tuple[PluginSettings, ...] = ()


class RetentionSettings(_Section):
    """How long ticks are kept: skipped ones (and missed) and the others, in days."""

    skipped_days: float = Field(default=7.0, gt=0)
    other_days: float = Field(default=90.0, gt=0)
    purge_interval: float = Field(default=3600.0, gt=0)


class SchedulingSettings(_Section):
    """The daemon's scheduler and sensor loops and their evaluation processes."""

    enabled: bool = True
    max_concurrent_evaluations: int = Field(default=8, ge=1)
    processes_per_location: int = Field(default=1, ge=1)
    # How often the loops re-read the instigators' states (an operator's start or stop).
    poll_interval: float = Field(default=5.0, gt=0)
    # With catchup: none, a tick this many seconds late still runs.
    catchup_grace: float = Field(default=60.0, ge=0)
    # A code location that failed to load is loaded again after this many seconds.
    load_retry: float = Field(default=30.0, gt=0)
    # A code location that takes longer than this to import is killed: its load failed.
    load_timeout: float = Field(default=120.0, gt=0, le=3600)
    retention: RetentionSettings = RetentionSettings()


class RunMonitoringSettings(_Section):
    """The daemon's run monitor: no run stays STARTING, STARTED or CANCELING forever."""

    enabled: bool = True
    poll_interval: float = Field(default=10.0, gt=0)
    start_timeout: float = Field(default=120.0, gt=0)
    cancel_timeout: float = Field(default=120.0, gt=0)
    max_resume_attempts: int = Field(default=1, ge=0)
    unknown_grace: float = Field(default=600.0, ge=0)
    max_runtime: float | None = Field(default=None, gt=0)
    health_check_timeout: float = Field(default=10.0, gt=0)
    max_concurrent_checks: int = Field(default=16, ge=1)


class RetryDelaySettings(_Section):
    """The wait before retry n: initial * factor**(n-1), at most max, ± jitter."""

    initial: float = Field(default=0.0, ge=0)
    factor: float = Field(default=2.0, ge=1)
    max: float = Field(default=600.0, ge=0)
    jitter: float = Field(default=0.1, ge=0, le=1)


class RunRetriesSettings(_Section):
    """The daemon's run retries: a failed run gets a child run while retries remain."""

    enabled: bool = True
    poll_interval: float = Field(default=2.0, gt=0)
    max_retries: int = Field(default=0, ge=0)
    retry_on_step_failure: bool = True
    strategy: Literal["from_failure", "all_steps"] = "from_failure"
    delay: RetryDelaySettings = RetryDelaySettings()
    retry_canceled: bool = False
    retry_max_runtime: bool = False
    max_age: float = Field(default=86400.0, gt=0)  # older run ends are never retried


class RunWorkerSettings(_Section):
    """The run worker: how long it rides out a store it cannot reach before giving up."""

    store_outage_timeout: float = Field(default=600.0, gt=0, le=86400)


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
    logs_dir: pathlib.Path | None = None
    storage_dir: pathlib.Path | None = None
    workspace: tuple[CodeLocationSettings, ...] = ()
    run_launcher: PluginSettings = PluginSettings(type="subprocess")
    run_coordinator: PluginSettings = PluginSettings(type="queued")
    executor: PluginSettings = PluginSettings(type="multiprocess")
    daemon: DaemonSettings = DaemonSettings()
    http: HttpSettings = HttpSettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    run_monitoring: RunMonitoringSettings = RunMonitoringSettings()
    run_retries: RunRetriesSettings = RunRetriesSettings()
    run_worker: RunWorkerSettings = RunWorkerSettings()

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
    def compute_logs_dir(self) -> pathlib.Path:
        return self.logs_dir or self.home / "logs"

    @property
    def outputs_dir(self) -> pathlib.Path:
        return self.storage_dir or self.home / "storage"
