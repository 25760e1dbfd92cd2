"""Loading code locations from files and modules, and the errors users see when that fails."""

from __future__ import annotations

import pathlib
import sys
import textwrap
from collections.abc import Iterator

import pytest

from vigil import errors
from vigil.config.settings import CodeLocationSettings
from vigil.definitions import definitions, workspace

HEADER = """\
from vigil.definitions.definitions import Definitions
from vigil.definitions.job import job
from vigil.definitions.step import step
"""

GOOD = (
    HEADER
    + """
@step
def hello() -> str:
    return "hello"

defs = Definitions(jobs=[job("{job}", [hello])])
also_defs = defs
"""
)


@pytest.fixture(autouse=True)
def restore_import_state() -> Iterator[None]:
    """Loading a location changes sys.path and sys.modules; put them back afterwards."""
    path, modules = list(sys.path), dict(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - set(modules):
        del sys.modules[name]


def write(directory: pathlib.Path, name: str, source: str) -> pathlib.Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def from_file(path: pathlib.Path, **kwargs: object) -> CodeLocationSettings:
    return CodeLocationSettings(file=path, **kwargs)


def load_error(settings: CodeLocationSettings, base_dir: pathlib.Path) -> str:
    with pytest.raises(errors.DefinitionError) as caught:
        workspace.load_location(settings, base_dir)
    return str(caught.value)


def test_a_file_location_loads_its_only_definitions(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "pipes.py", GOOD.format(job="hello"))
    location = workspace.load_location(from_file(path), tmp_path)
    assert location.name == "pipes"
    assert isinstance(location.definitions, definitions.Definitions)
    assert location.definitions.job_names == ("hello",)
    assert "vigil_location_pipes" in sys.modules


def test_a_relative_file_is_resolved_against_the_base_dir(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "code/pipes.py", GOOD.format(job="hello"))
    settings = from_file(pathlib.Path("code/pipes.py"), name="mine")
    location = workspace.load_location(settings, tmp_path)
    assert location.name == "mine"
    assert location.settings is settings


def test_loading_twice_returns_the_cached_location(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "pipes.py", GOOD.format(job="hello"))
    first = workspace.load_location(from_file(path), tmp_path)
    assert workspace.load_location(from_file(path), tmp_path) is first


def test_a_module_location_imports_from_its_working_directory(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "src/wsmod_pkg/__init__.py", "")
    write(tmp_path, "src/wsmod_pkg/jobs.py", GOOD.format(job="modjob"))
    settings = CodeLocationSettings(module="wsmod_pkg.jobs", working_directory=pathlib.Path("src"))
    location = workspace.load_location(settings, tmp_path)
    assert location.name == "wsmod_pkg.jobs"
    assert location.definitions.job_names == ("modjob",)
    assert str(tmp_path / "src") in sys.path


def test_a_module_location_defaults_to_the_base_dir(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "wsmod_flat.py", GOOD.format(job="flat"))
    location = workspace.load_location(CodeLocationSettings(module="wsmod_flat"), tmp_path)
    assert location.definitions.job_names == ("flat",)


def test_attribute_picks_one_of_several_definitions(tmp_path: pathlib.Path) -> None:
    source = GOOD.format(job="a") + "\nother = Definitions(jobs=[job('b', [hello])])\n"
    path = write(tmp_path, "two.py", source)
    location = workspace.load_location(from_file(path, attribute="other"), tmp_path)
    assert location.definitions.job_names == ("b",)


def test_two_definitions_without_attribute_are_refused(tmp_path: pathlib.Path) -> None:
    source = GOOD.format(job="a") + "\nother = Definitions(jobs=[job('b', [hello])])\n"
    path = write(tmp_path, "two.py", source)
    message = load_error(from_file(path), tmp_path)
    assert "code location 'two'" in message
    assert "exactly one Definitions" in message
    assert "defs, other" in message
    assert "two.py" in message


def test_no_definitions_is_refused_naming_the_module(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "wsmod_empty.py", "x = 1\n")
    message = load_error(CodeLocationSettings(module="wsmod_empty"), tmp_path)
    assert "module 'wsmod_empty' must define exactly one Definitions object (found: none)" in (
        message
    )


def test_a_missing_attribute_is_refused(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "pipes.py", GOOD.format(job="hello"))
    message = load_error(from_file(path, attribute="nope"), tmp_path)
    assert "has no Definitions named 'nope'" in message


def test_a_syntax_error_names_file_and_line(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "examples/pipelines.py", "x = 1\n\ndef broken(:\n    pass\n")
    settings = from_file(pathlib.Path("examples/pipelines.py"), name="examples")
    with pytest.raises(errors.CodeLocationLoadError) as caught:
        workspace.load_location(settings, tmp_path)
    assert str(caught.value).startswith(
        "code location 'examples' failed to load: examples/pipelines.py:3: SyntaxError: "
    )


def test_a_name_error_names_the_users_line(tmp_path: pathlib.Path) -> None:
    source = HEADER + "\n\nvalue = foo + 1\n"
    write(tmp_path, "examples/pipelines.py", source)
    settings = from_file(pathlib.Path("examples/pipelines.py"), name="examples")
    message = load_error(settings, tmp_path)
    assert message == (
        "code location 'examples' failed to load: examples/pipelines.py:6: "
        "NameError: name 'foo' is not defined"
    )
    assert "vigil_location_examples" not in sys.modules


def test_an_error_in_a_module_the_location_imports_names_that_module(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, "wsmod_helper.py", "def boom():\n    raise RuntimeError('no db')\n")
    write(tmp_path, "wsmod_main.py", "import wsmod_helper\n\nwsmod_helper.boom()\n")
    message = load_error(CodeLocationSettings(module="wsmod_main"), tmp_path)
    assert message == (
        "code location 'wsmod_main' failed to load: wsmod_helper.py:2: RuntimeError: no db"
    )


def test_an_error_raised_inside_a_library_points_at_the_users_call(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, "wsmod_lib.py", "import json\n\njson.loads('{')\n")
    message = load_error(CodeLocationSettings(module="wsmod_lib"), tmp_path)
    assert message.startswith("code location 'wsmod_lib' failed to load: wsmod_lib.py:3: ")
    assert "JSONDecodeError" in message


def test_a_bad_job_in_user_code_points_at_the_line(tmp_path: pathlib.Path) -> None:
    source = HEADER + "\n@step\ndef report(cleaned):\n    pass\n\nj = job('etl', [report])\n"
    write(tmp_path, "wsmod_badjob.py", source)
    message = load_error(CodeLocationSettings(module="wsmod_badjob"), tmp_path)
    assert "wsmod_badjob.py:9: DefinitionError: step 'report' of job 'etl'" in message


def test_a_missing_module_is_a_load_error(tmp_path: pathlib.Path) -> None:
    message = load_error(CodeLocationSettings(module="wsmod_not_there"), tmp_path)
    assert message == (
        "code location 'wsmod_not_there' failed to load: "
        "ModuleNotFoundError: No module named 'wsmod_not_there'"
    )


def test_a_missing_file_is_a_load_error(tmp_path: pathlib.Path) -> None:
    message = load_error(from_file(pathlib.Path("gone.py")), tmp_path)
    assert message == "code location 'gone' failed to load: no file gone.py"


def test_sys_exit_at_import_is_a_load_error(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "quits.py", "import sys\nsys.exit(2)\n")
    message = load_error(from_file(path), tmp_path)
    assert "quits.py:2: SystemExit: 2" in message


def test_workspace_finds_jobs_across_locations(tmp_path: pathlib.Path) -> None:
    one = write(tmp_path, "one.py", GOOD.format(job="alpha"))
    two = write(tmp_path, "two.py", GOOD.format(job="beta"))
    ws = workspace.load_workspace([from_file(one), from_file(two)], tmp_path)
    location, found = ws.find_job("beta")
    assert (location.name, found.name) == ("two", "beta")
    assert ws.job_names == ("alpha", "beta")
    with pytest.raises(errors.UnknownJob, match=r"no job named 'gamma' \(known jobs: alpha, beta"):
        ws.find_job("gamma")


def test_the_same_job_in_two_locations_is_refused(tmp_path: pathlib.Path) -> None:
    one = write(tmp_path, "one.py", GOOD.format(job="alpha"))
    two = write(tmp_path, "two.py", GOOD.format(job="alpha"))
    with pytest.raises(errors.DefinitionError, match="'alpha' is defined in code locations"):
        workspace.load_workspace([from_file(one), from_file(two)], tmp_path)
