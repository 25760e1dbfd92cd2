"""The reliability suite's short and long forms, its seed, and the daemons of a test.

Every test here runs in `make test` in a short form (a few seconds to a minute each) and in
a long form under `make chaos`, which sets VIGIL_TEST_CHAOS_LONG=1. A test asks which with
`chaos_long()` (at import, e.g. for a timeout) or the `long_form` fixture, and sizes its
load from that: the same assertions, more runs, more kills, more minutes.

Randomized tests draw from the `seed` fixture: VIGIL_TEST_CHAOS_SEED, or a fixed default,
so that a run is repeatable. A failed test's report ends with the seed and the command
that reproduces it.

Only VIGIL_TEST_* names are read here: tests/conftest.py removes every other VIGIL_*
variable from each test's environment.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Generator, Iterator

import pytest

from tests.daemon.process import Daemons

LONG_ENV = "VIGIL_TEST_CHAOS_LONG"
SEED_ENV = "VIGIL_TEST_CHAOS_SEED"
DEFAULT_SEED = 1313
_SEED_KEY = pytest.StashKey[int]()
# The instance fixtures a test of this suite may use, in the order `daemons` looks for them.
INSTANCE_FIXTURES = ("instance", "sqlite_instance", "outage_instance")


def chaos_long() -> bool:
    """True under `make chaos` (VIGIL_TEST_CHAOS_LONG set to anything but "", 0 or false)."""
    return os.environ.get(LONG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def chaos_seed() -> int:
    """VIGIL_TEST_CHAOS_SEED, else the fixed default."""
    text = os.environ.get(SEED_ENV, "").strip()
    if not text:
        return DEFAULT_SEED
    try:
        return int(text)
    except ValueError:
        raise pytest.UsageError(f"{SEED_ENV} must be an integer (got {text!r})") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: a reliability test with a short and a long form")


@pytest.fixture
def long_form() -> bool:
    """Whether this is the long form (`make chaos`)."""
    return chaos_long()


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The seed of the test's random choices; printed with the test's failure."""
    value = chaos_seed()
    request.node.stash[_SEED_KEY] = value
    return value


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """A failed test that drew from `seed` says which seed, and how to run it again."""
    outcome = yield
    report = outcome.get_result()
    value = item.stash.get(_SEED_KEY, None)
    if value is None or not report.failed:
        return
    form = f"{LONG_ENV}=1 " if chaos_long() else ""
    report.sections.append(
        (
            "chaos seed",
            f"seed {value}; reproduce with: {form}{SEED_ENV}={value} pytest '{item.nodeid}'",
        )
    )


@pytest.fixture
def daemons(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Daemons]:
    """`vigil daemon run` processes on the test's instance; all killed by pid at the end,
    and their logs printed (shown when the test fails)."""
    name = next((n for n in INSTANCE_FIXTURES if n in request.fixturenames), "instance")
    started = Daemons(request.getfixturevalue(name), tmp_path)
    try:
        yield started
    finally:
        for daemon in started.stop_all():
            print(f"--- daemon {daemon.pid} log ---\n{daemon.log()}")
