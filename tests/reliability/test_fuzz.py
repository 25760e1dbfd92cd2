"""Fuzzed input: whatever a user writes, vigil answers with its own error, in one line
naming the input, and a refused input changes nothing.

Generated vigil.yaml documents (trees over the real key names and junk), raw bytes as
vigil.yaml and as run configs, VIGIL_* environments (real, mistyped, junk names), cron
strings and time zones, run configs against a step's model, tags (from the CLI and as
vigil reads them), sensor answers; then a few real `vigil run launch` processes with a
fuzzed config file and tags. Hypothesis is derandomized, so CI sees the same examples.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from unittest import mock

import click
import pydantic
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.acceptance.harness import Instance
from vigil import (
    Definitions,
    RunRequest,
    SkipReason,
    assembly,
    errors,
    job,
    monitoring,
    retrying,
    runs,
    step,
)
from vigil import schedule as schedule_decorator
from vigil import sensor as sensor_decorator
from vigil.cli import common, render
from vigil.config import environment, loader, redact
from vigil.config import settings as settings_mod
from vigil.coordinators import admission
from vigil.evaluation import evaluate, messages
from vigil.scheduling import ticks as tick_times

T = TypeVar("T")
FUZZ = settings(
    max_examples=75,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FEW = settings(FUZZ, max_examples=3)  # a process each: seconds on a loaded machine


# what a user might write -------------------------------------------------------------------
def _key_names(model: type[pydantic.BaseModel]) -> set[str]:
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for member in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(member, type) and issubclass(member, pydantic.BaseModel):
                names |= _key_names(member)
    return names


KEYS = sorted(_key_names(settings_mod.InstanceSettings) | {"options", "env", "password"})
TOP_KEYS = sorted(settings_mod.InstanceSettings.model_fields)
PLUGIN_TYPES = [
    "subprocess",
    "queued",
    "immediate",
    "multiprocess",
    "in_process",
    "nope",
    ":Cls",
    "..relative:Cls",
    "a.:b",
    "x:",
    "nowhere.at_all:Cls",
    "vigil.errors:VigilError",
    "vigil:errors",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["1e308", "-1", "0", ".inf", "5", "abc", "", "postgres", "sqlite"]),
    st.sampled_from(PLUGIN_TYPES),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12), st.integers(-3, 3))
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
documents = st.dictionaries(st.sampled_from(TOP_KEYS) | keys, trees, max_size=6)


@pytest.fixture(scope="module")
def home() -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory() as name:
        yield pathlib.Path(name)


def attempt(fn: Callable[[], T], *refusals: type[Exception]) -> tuple[T | None, Exception | None]:
    """(what `fn` gave, None), or (None, the refusal it raised): nothing else may escape."""
    try:
        return fn(), None
    except refusals as exc:
        return None, exc


def assert_names_its_input(exc: Exception | None, *inputs: str) -> None:
    """Each line of the message starts with the input it is about."""
    message = str(exc)
    assert message, exc
    for line in message.splitlines():
        assert line.startswith(inputs), (line, inputs)
        assert "Traceback" not in line


def load(home: pathlib.Path, environ: dict[str, str] | None = None) -> Any:
    with mock.patch.dict(os.environ, environ or {}):
        return loader.load_settings(home)


def check_built(built: settings_mod.InstanceSettings) -> None:
    """What `config show` and `config check` do with settings that validated."""
    shown = loader.redacted(built)
    yaml.safe_dump(shown)
    json.dumps(shown)
    _, refused = attempt(lambda: assembly.check_plugins(built), errors.PluginError)
    if refused is not None:
        assert str(refused).startswith(("run_launcher", "executor", "run_coordinator")), refused


# vigil.yaml ------------------------------------------------------------------------------
@FUZZ
@given(document=documents)
def test_any_settings_document_gives_settings_or_one_config_error(
    home: pathlib.Path, document: dict[Any, Any]
) -> None:
    path = home / "vigil.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    built, refused = attempt(lambda: load(home), errors.ConfigError)
    if built is None:
        assert_names_its_input(refused, str(path))
    else:
        check_built(built)


@FUZZ
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_as_the_settings_file_give_settings_or_one_config_error(
    home: pathlib.Path, content: bytes
) -> None:
    path = home / "vigil.yaml"
    path.write_bytes(content)
    built, refused = attempt(lambda: load(home), errors.ConfigError)
    if built is None:
        assert_names_its_input(refused, str(path))


# the environment -------------------------------------------------------------------------
SETTING_NAMES = sorted(environment.setting_names()[0])


def _mistyped(name: str) -> st.SearchStrategy[str]:
    cut = st.integers(min_value=6, max_value=max(6, len(name) - 1))
    return st.one_of(
        st.just(name.lower()),
        cut.map(lambda i: name[:i] + name[i + 1 :]),
        cut.map(lambda i: name[:i] + "_" + name[i:]),
        st.just(name.replace("__", "_")),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=20).map(lambda s: name + s),
    )


variable_names = st.one_of(
    st.sampled_from(SETTING_NAMES),
    st.sampled_from(SETTING_NAMES).flatmap(_mistyped),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", min_size=1, max_size=20).map(
        lambda s: "VIGIL_" + s
    ),
)
env_values = st.one_of(
    st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=30),
    trees.map(lambda t: json.dumps(t, default=str)),
    st.sampled_from(["{", "[1", "null", "1e308", "nan", "-inf", "[]", "{}", "true"]),
)


@FUZZ
@given(environ=st.dictionaries(variable_names, env_values, max_size=4))
def test_any_vigil_environment_gives_settings_or_one_config_error(
    home: pathlib.Path, environ: dict[str, str]
) -> None:
    (home / "vigil.yaml").unlink(missing_ok=True)
    built, refused = attempt(lambda: load(home, environ), errors.ConfigError)
    if built is None:
        assert_names_its_input(refused, "environment variable ", str(home / "vigil.yaml"))
    else:
        check_built(built)


# secrets ---------------------------------------------------------------------------------
SECRET = "planted-S3CRET"


@FUZZ
@given(
    where=st.lists(st.sampled_from(KEYS) | st.text(max_size=8), min_size=1, max_size=4),
    secret_key=st.sampled_from(["password", "api_token", "SECRET", "key", "credentials"]),
    wrapper=st.sampled_from(["plain", "url", "list", "env"]),
)
def test_a_planted_secret_is_never_printed(
    home: pathlib.Path, where: list[str], secret_key: str, wrapper: str
) -> None:
    value: Any = {
        "plain": {secret_key: SECRET},
        "url": {"dsn": f"postgresql://bob:{SECRET}@db/x"},
        "list": [{secret_key: SECRET}],
        "env": {"env": {"ANY_NAME": SECRET}},
    }[wrapper]
    document: Any = value
    for key in reversed(where):
        document = {key: document}
    path = home / "vigil.yaml"
    path.write_text(yaml.safe_dump(document))
    built, refused = attempt(lambda: load(home), errors.ConfigError)
    assert SECRET not in str(refused)
    if built is not None:
        assert SECRET not in json.dumps(loader.redacted(built))
        assert SECRET not in yaml.safe_dump(loader.redacted(built))


@FUZZ
@given(data=trees, path=st.lists(st.sampled_from(KEYS) | st.integers(0, 3), max_size=4))
def test_redaction_never_fails(data: Any, path: list[Any]) -> None:
    redact.tree(data)
    redact.value([str(p) for p in path], data)


# cron strings and time zones ---------------------------------------------------------------
@step
def hello() -> int:
    return 1


hello_job = job("hello", [hello])
cron_fields = st.one_of(
    st.sampled_from(["*", "*/5", "0", "59", "60", "1-5", "5-1", "MON", "JAN", "L", "1#2", "?"]),
    st.sampled_from(["*/0", "-1", "99999999999999999999", "1,2,3", "W", "LW", "0/0", "*/60"]),
    st.text(max_size=6),
)
crons = st.one_of(
    st.lists(cron_fields, min_size=0, max_size=7).map(" ".join),
    st.sampled_from(["@daily", "@hourly", "@yearly", "@reboot", "@every 5s", "0 0 30 2 *"]),
    st.text(max_size=30),
)
zones = st.one_of(
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu", "Etc/GMT+12"]),
    st.sampled_from(["", "Nowhere/City", "../../etc/passwd", "/etc/localtime", "UTC\x00", "utc"]),
    st.text(max_size=20),
)


@FUZZ
@given(cron=crons, zone=zones)
def test_any_cron_and_zone_give_a_schedule_or_one_definition_error(cron: str, zone: str) -> None:
    def fuzzed() -> None:
        return None

    decorate = schedule_decorator(cron=cron, job=hello_job, timezone=zone)
    made, refused = attempt(lambda: decorate(fuzzed), errors.DefinitionError)
    if made is None:
        assert_names_its_input(refused, "schedule 'fuzzed'")
        return
    ticks = tick_times.preview(made.cron, made.zone, 1_700_000_000.0, 3)
    assert ticks == sorted(ticks)
    for tick in ticks:
        assert "\n" not in tick_times.describe(tick, made.zone)


# run configs -----------------------------------------------------------------------------
class Limits(pydantic.BaseModel):
    rows: int = 1
    ratio: float = 0.5
    names: list[str] = []


@step
def configured(config: Limits) -> int:
    return config.rows


configured_job = job("configured", [configured])
run_configs = st.one_of(
    trees,
    st.fixed_dictionaries({"steps": st.dictionaries(st.sampled_from(["configured", "x"]), trees)}),
    st.fixed_dictionaries(
        {
            "steps": st.fixed_dictionaries(
                {
                    "configured": st.dictionaries(
                        st.sampled_from(["rows", "ratio", "names", "z"]), trees
                    )
                }
            )
        }
    ),
)


@FUZZ
@given(run_config=run_configs)
def test_any_run_config_validates_or_is_one_run_config_error(run_config: Any) -> None:
    _, refused = attempt(
        lambda: configured_job.validate_run_config(run_config), errors.RunConfigError
    )
    if refused is not None:
        assert_names_its_input(refused, "run config")


@FUZZ
@given(content=st.binary(max_size=200) | trees.map(lambda t: yaml.safe_dump(t).encode()))
def test_any_run_config_file_reads_or_is_one_run_config_error(
    home: pathlib.Path, content: bytes
) -> None:
    path = home / "run.yaml"
    path.write_bytes(content)
    read, refused = attempt(lambda: common.read_run_config(path), errors.RunConfigError)
    if read is None:
        assert_names_its_input(refused, str(path))


# tags ------------------------------------------------------------------------------------
tag_text = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=20)


@FUZZ
@given(pairs=st.lists(tag_text, max_size=4))
def test_cli_tags_parse_or_are_a_usage_error(pairs: list[str]) -> None:
    tags, refused = attempt(lambda: common.parse_tags(tuple(pairs)), click.BadParameter)
    if tags is None:
        assert isinstance(refused, click.BadParameter)
        assert "is not KEY=VALUE" in refused.format_message()
        return
    for key, value in tags.items():
        shown = render.printable(key) + "=" + render.printable(value)
        assert shown.isprintable(), shown


@FUZZ
@given(
    tags=st.dictionaries(
        st.sampled_from(
            [runs.TAG_MAX_RUNTIME, runs.TAG_MAX_RETRIES, runs.TAG_RETRY_STRATEGY, "vigil/priority"]
        ),
        tag_text | st.sampled_from(["²", "1" * 5000, "nan", "inf", "-0", " 3 ", "1e400"]),
    )
)
def test_the_tags_vigil_reads_give_a_value_or_one_tag_error(tags: dict[str, str]) -> None:
    run = runs.Run(run_id="r", job_name="hello", status=runs.RunStatus.STARTED, tags=tags)
    admission.priority_of(tags)
    for read in (
        lambda: monitoring.max_runtime(run, None),
        lambda: retrying.policy_for(tags, settings_mod.RunRetriesSettings()),
    ):
        _, refused = attempt(read, errors.TagError)
        assert refused is None or "tag vigil/" in str(refused), refused


# sensor answers --------------------------------------------------------------------------
def _request(fields: dict[str, Any]) -> Any:
    return RunRequest(**fields)


answers = st.recursive(
    st.one_of(
        trees,
        st.builds(SkipReason, st.one_of(st.none(), tag_text, st.integers())),
        st.fixed_dictionaries(
            {},
            optional={
                "run_key": st.one_of(st.none(), tag_text, st.integers()),
                "run_config": run_configs,
                "tags": st.dictionaries(tag_text | st.integers(), tag_text | st.integers()),
                "job": st.sampled_from(["configured", "hello", "other"]) | st.none(),
            },
        ).map(_request),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner),
    max_leaves=6,
)


@FUZZ
@given(answer=answers)
def test_any_sensor_answer_gives_runs_or_one_error_naming_the_sensor(answer: Any) -> None:
    @sensor_decorator(job=configured_job, name="fuzzed")
    def fuzzed() -> Any:
        return answer

    found = evaluate.handle(
        Definitions(jobs=[configured_job], sensors=[fuzzed]), messages.SensorRequest("fuzzed")
    )
    json.dumps(found.to_json())  # what crosses the pipe to the daemon
    assert messages.Answer.from_json(json.loads(json.dumps(found.to_json()))) == found
    if found.error is not None:
        assert found.error.startswith("sensor 'fuzzed'"), found.error
        assert "Traceback" not in found.error


# the CLI, as a user runs it: a refused input creates no run --------------------------------
@pytest.fixture(scope="module")
def cli_instance(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    from tests.acceptance import harness

    root = tmp_path_factory.mktemp("fuzz-cli")
    home, cwd = root / "home", root / "cwd"
    home.mkdir()
    cwd.mkdir()
    instance = Instance(home=home, cwd=cwd, env=harness.base_env(home))
    instance.write_config(harness.workspace_yaml() + harness.IMMEDIATE)
    instance.ok("instance", "migrate")
    return instance


def _runs(instance: Instance) -> list[tuple[Any, ...]]:
    """Every run row and tag, read from the SQLite file (a process per look is too slow)."""
    with contextlib.closing(sqlite3.connect(instance.home / "vigil.db")) as db:
        found = db.execute("select * from runs order by run_id").fetchall()
        return found + db.execute("select * from run_tags order by run_id, key").fetchall()


@FEW
@given(
    content=st.binary(max_size=100) | run_configs.map(lambda t: yaml.safe_dump(t).encode()),
    tags=st.lists(tag_text.filter(lambda t: not t.startswith("-")), max_size=2),
)
def test_run_launch_with_fuzzed_config_and_tags_refuses_cleanly(
    cli_instance: Instance, content: bytes, tags: list[str]
) -> None:
    config = cli_instance.cwd / "fuzzed.yaml"
    config.write_bytes(content)
    before = _runs(cli_instance)
    args = ["run", "launch", "configured", "--config", str(config)]
    for tag in tags:
        args += ["--tag", tag]
    result = cli_instance.vigil(*args)
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode == 0:
        assert len(_runs(cli_instance)) > len(before)
        return
    assert result.returncode == 2, result
    assert _runs(cli_instance) == before


@FEW
@given(
    document=documents,
    environ=st.dictionaries(
        variable_names, env_values.filter(lambda v: "\x00" not in v), max_size=2
    ),
)
def test_commands_with_fuzzed_settings_refuse_cleanly(
    cli_instance: Instance, document: dict[Any, Any], environ: dict[str, str]
) -> None:
    fuzzed = cli_instance.cwd / "fuzzed-home"
    fuzzed.mkdir(exist_ok=True)
    (fuzzed / "vigil.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))
    result = cli_instance.vigil("--home", str(fuzzed), "config", "check", env=environ)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 2), result
    if result.returncode == 2:
        assert result.stderr.startswith("error: "), result.stderr
