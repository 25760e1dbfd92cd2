"""The Celery launcher's options (`run_launcher: {type: celery, options: ...}`).

The broker URL is a secret (it may carry a password): a `SecretStr`, given in vigil.yaml,
in `VIGIL_RUN_LAUNCHER__OPTIONS__BROKER_URL`, or in a file named by `broker_url_file`
(read when the launcher or the worker is built). It is never printed: `vigil config show`
masks it, and errors name the broker by host and port only.
"""

from __future__ import annotations

import pathlib
import urllib.parse

import pydantic

from vigil import errors
from vigil.config import settings

# Schemes of the brokers (and result backends) kombu and Celery speak.
SCHEMES = frozenset({"redis", "rediss", "amqp", "amqps", "pyamqp", "sqs", "memory"})
DEFAULT_QUEUE = "vigil"
# Longer than any run may take (30 days): an unacknowledged task is given again to
# another worker after this, and a run task is acknowledged only when its run ends.
VISIBILITY_TIMEOUT = 31 * settings.DAY


class CeleryOptions(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    broker_url: pydantic.SecretStr | None = None
    broker_url_file: pathlib.Path | None = None
    result_backend: pydantic.SecretStr | None = None  # default: the broker URL
    queue: str = pydantic.Field(default=DEFAULT_QUEUE, min_length=1, max_length=200)
    connect_timeout: settings.Interval = 5.0
    result_expires: settings.Keep = 31 * settings.DAY

    @pydantic.field_validator("broker_url", "result_backend")
    @classmethod
    def _a_url(cls, value: pydantic.SecretStr | None) -> pydantic.SecretStr | None:
        if value is not None:
            problem = url_problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    @pydantic.model_validator(mode="after")
    def _one_broker(self) -> CeleryOptions:
        if (self.broker_url is None) == (self.broker_url_file is None):
            raise ValueError("give exactly one of 'broker_url' or 'broker_url_file'")
        return self


def url_problem(url: str) -> str | None:
    """Why `url` is not a broker URL vigil can use (never quoting it); None if it is."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in SCHEMES:
        shown = parts.scheme or "none"
        return f"a broker URL needs a scheme among {', '.join(sorted(SCHEMES))} (got {shown})"
    if parts.scheme != "memory" and not parts.hostname:
        return "a broker URL needs a host (scheme://host:port/...)"
    return None


def broker_url(options: CeleryOptions) -> str:
    """The broker URL, read from `broker_url_file` if that names it; ConfigError if the
    file cannot be read or does not hold a usable URL."""
    if options.broker_url is not None:
        return options.broker_url.get_secret_value().strip()
    assert options.broker_url_file is not None
    key = "run_launcher.options.broker_url_file"
    try:
        url = options.broker_url_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise errors.ConfigError(
            f"{key}: cannot read {options.broker_url_file}: {exc.strerror}"
        ) from None
    problem = url_problem(url)
    if problem is not None:
        raise errors.ConfigError(f"{key}: {options.broker_url_file}: {problem}")
    return url


def result_backend(options: CeleryOptions) -> str:
    if options.result_backend is not None:
        return options.result_backend.get_secret_value().strip()
    return broker_url(options)


def where(url: str) -> str:
    """The broker as an error may name it: scheme, host and port, no credentials."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"
