"""The Celery launcher's options: one broker, a URL vigil can use, read from a file if so
named; what crosses the broker has one codec."""

from __future__ import annotations

import pathlib

import pydantic
import pytest

from vigil import errors
from vigil.celery import options, task


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://:pw@broker.internal/1", "amqp://u:p@mq:5672//"],
)
def test_broker_urls_vigil_can_use(url: str) -> None:
    assert options.url_problem(url) is None
    assert options.broker_url(options.CeleryOptions(broker_url=url)) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("s3cret@nowhere", "needs a scheme"),
        ("http://broker:80", "needs a scheme"),
        ("redis://:pw@broker:port/0", "not a URL"),
        ("redis:///0", "needs a host"),
    ],
)
def test_urls_it_refuses_without_quoting_them(url: str, problem: str) -> None:
    found = options.url_problem(url)
    assert found is not None
    assert problem in found
    assert "pw" not in found
    with pytest.raises(pydantic.ValidationError, match=problem):
        options.CeleryOptions(broker_url=url)


def test_exactly_one_of_the_url_and_its_file() -> None:
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        options.CeleryOptions()
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        options.CeleryOptions(broker_url="redis://b", broker_url_file=pathlib.Path("/f"))


def test_the_url_file_is_read_when_used(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "broker"
    opts = options.CeleryOptions(broker_url_file=path)
    with pytest.raises(errors.ConfigError, match="broker_url_file: cannot read"):
        options.broker_url(opts)
    path.write_text("nonsense\n")
    with pytest.raises(errors.ConfigError, match="needs a scheme"):
        options.broker_url(opts)
    path.write_text("redis://:pw@b:6379/0\n")
    assert options.broker_url(opts) == "redis://:pw@b:6379/0"
    assert options.result_backend(opts) == "redis://:pw@b:6379/0"
    assert options.where("redis://:pw@b:6379/0") == "redis://b:6379"


def test_a_run_request_round_trips_and_names_one_task_per_launch() -> None:
    request = task.RunRequest("r1", "t1", resume=True)
    assert task.RunRequest.from_kwargs(request.to_kwargs()) == request
    assert request.task_id != task.RunRequest("r1", "t2", resume=True).task_id
    assert request.task_id != task.RunRequest("r1", "t1").task_id
