"""Every error vigil raises on purpose, in one tree.

    VigilError
    ├── ConfigError              a bad vigil.yaml, env override or secret file
    ├── DefinitionError          user code that does not describe a valid job or location
    │   └── CodeLocationLoadError  a code location that fails to import
    ├── NotFound
    │   ├── UnknownJob
    │   └── UnknownRun
    ├── RunConfigError           run config that does not validate against the steps' models
    ├── TagError                 a run tag vigil reads (vigil/...) with a value it cannot use
    ├── PartitionError           a partition key (or range) that is not one of a job's partitions
    ├── ReexecutionError         a re-execution that cannot be made (run not ended, no failure)
    ├── PluginError              a launcher, executor or coordinator that cannot be loaded
    ├── LaunchError              a launcher that could not give a run its worker
    │   └── LauncherUnavailable  the launcher's service (a broker) cannot be reached (transient)
    ├── MissingOutputs           a retry or resume whose reused outputs are gone
    ├── OutputMismatch           a stored output whose bytes are not those its run recorded
    ├── DaemonAlreadyRunning     another live daemon uses this store (host, pid, heartbeat age)
    ├── EvaluationError          a schedule or sensor evaluation that failed outside the function
    │   └── EvaluationTimeout    an evaluation past its timeout (its process was killed)
    └── StoreError               anything the instance store refuses or cannot do
        ├── StoreUnavailable     the database cannot be reached (transient: retry)
        ├── SchemaMismatch       the database is at another schema version than this vigil
        ├── InvalidTransition    a status change the run state machine forbids
        └── DuplicateRun         a run id that already exists
            └── DuplicateRunKey  a run key its instigator already used

Only the CLI turns these into messages and exit codes.
"""

from __future__ import annotations


class VigilError(Exception):
    """Base of every error vigil raises on purpose."""


class ConfigError(VigilError):
    """The instance settings are invalid; the message names file, key and expectation."""


class DefinitionError(VigilError):
    """User definitions are invalid (a cycle, a missing upstream, a duplicate name...)."""


class CodeLocationLoadError(DefinitionError):
    """A code location could not be imported; the message carries file and line."""


class NotFound(VigilError):
    """Something named by the user does not exist."""


class UnknownJob(NotFound):
    """No code location defines a job of this name."""


class UnknownRun(NotFound):
    """No run with this id is in the store."""


class RunConfigError(VigilError):
    """A run config does not validate; the message carries the key path."""


class TagError(VigilError):
    """A `vigil/...` tag has a value vigil cannot use; the message names tag and value."""


class PartitionError(VigilError):
    """A partition key or range a job's partitions do not hold; the message names the key
    and the partitions, and why (format, range, not complete yet)."""


class ReexecutionError(VigilError):
    """A run cannot be re-executed as asked (it has not ended, or nothing failed)."""


class PluginError(VigilError):
    """A pluggable class (launcher, executor, coordinator) cannot be loaded or configured.

    `key` is the settings key it concerns (`run_launcher`), so the CLI can name the file or
    environment variable that set it.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class LaunchError(VigilError):
    """The run launcher could not start a worker for a run."""


class LauncherUnavailable(LaunchError):
    """The service the launcher hands runs to (a broker) cannot be reached: transient.

    Nothing was handed over; the run may be launched again once the service is back.
    """


class MissingOutputs(VigilError):
    """A run reuses outputs of its lineage that no run kept."""


class OutputMismatch(VigilError):
    """A stored step output is not the one its run recorded (digest); it is never loaded."""


class DaemonAlreadyRunning(VigilError):
    """Another daemon is live on this store; the message names its host, pid and age."""


class EvaluationError(VigilError):
    """An evaluation process could not answer (it died, or its code location failed)."""


class EvaluationTimeout(EvaluationError):
    """An evaluation ran past its timeout; its process was killed and will be restarted."""


class StoreError(VigilError):
    """The instance store refused or failed an operation."""


class LeaseLost(StoreError):
    """A write of owned work was refused: this daemon no longer holds the unit's lease (its
    fencing token changed: another daemon took the unit over)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; retrying later may succeed."""


class SchemaMismatch(StoreError):
    """The database schema is not the one this version of vigil expects."""


class InvalidTransition(StoreError):
    """A run status change that the run state machine forbids."""


class DuplicateRun(StoreError):
    """A run with this id already exists."""


class DuplicateRunKey(DuplicateRun):
    """The instigator already submitted a run with this run key."""
