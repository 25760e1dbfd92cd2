"""The `daemon:` settings section and the loops it names by `module:Class`."""

from __future__ import annotations

import pathlib

import pytest

from tests.daemon import loops as test_loops
from tests.daemon.fakes import ManualClock, UnusedStore
from vigil import errors
from vigil.config import loader, settings
from vigil.daemon import extension


def load(home: pathlib.Path, text: str) -> settings.InstanceSettings:
    home.mkdir(parents=True, exist_ok=True)
    (home / "vigil.yaml").write_text(text)
    return loader.load_settings(home)


def test_daemon_defaults(tmp_path: pathlib.Path) -> None:
    daemon = loader.load_settings(tmp_path).daemon
    assert (daemon.heartbeat_interval, daemon.shutdown_grace) == (5.0, 30.0)
    backoff = daemon.restart_backoff
    assert (backoff.base, backoff.factor, backoff.cap, backoff.jitter) == (1.0, 2.0, 60.0, 0.1)
    assert daemon.loops == ()


def test_the_daemon_section_from_the_file_and_the_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_DAEMON__SHUTDOWN_GRACE", "7")
    daemon = load(
        tmp_path,
        "daemon:\n  heartbeat_interval: 0.5\n  restart_backoff: {cap: 10}\n"
        "  loops:\n    - type: tests.daemon.loops:Ticker\n      options: {interval: 1}\n",
    ).daemon
    assert (daemon.heartbeat_interval, daemon.shutdown_grace) == (0.5, 7.0)
    assert daemon.restart_backoff.cap == 10.0
    assert daemon.loops[0].type == "tests.daemon.loops:Ticker"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "daemon:\n  heartbeat_interval: 0\n",
            "daemon.heartbeat_interval: Input should be greater than or equal to 0.01",
        ),
        ("daemon:\n  beat: 1\n", "daemon.beat: unknown key"),
        ("daemon:\n  restart_backoff: {jitter: 2}\n", "daemon.restart_backoff.jitter"),
    ],
)
def test_a_bad_daemon_section_names_the_key(
    tmp_path: pathlib.Path, text: str, expected: str
) -> None:
    with pytest.raises(errors.ConfigError, match=expected.replace(".", r"\.")):
        load(tmp_path, text)


def plugin(spec: str, **options: object) -> settings.DaemonSettings:
    return settings.DaemonSettings(loops=(settings.PluginSettings(type=spec, options=options),))


def test_configured_loops_are_built_with_their_options_and_context() -> None:
    daemon = settings.DaemonSettings(
        loops=(
            settings.PluginSettings(type="tests.daemon.loops:Ticker"),
            settings.PluginSettings(
                type="tests.daemon.loops:Flaky",
                options={"name": "flaky-2", "interval": 0.5, "timeout": 3, "every": 4},
            ),
        )
    )
    context = extension.LoopContext(store=UnusedStore(), clock=ManualClock(), workspace=())
    ticker, flaky = extension.build_loops(extension.resolve_loops(daemon), context)
    assert isinstance(ticker, test_loops.Ticker)
    assert (ticker.name, ticker.interval, ticker.timeout) == ("ticker", 10.0, 60.0)
    assert isinstance(flaky, test_loops.Flaky)
    assert (flaky.name, flaky.interval, flaky.timeout, flaky.every) == ("flaky-2", 0.5, 3.0, 4)
    assert flaky.context is context


@pytest.mark.parametrize(
    ("daemon", "expected"),
    [
        (plugin("ticker"), "daemon.loops.0.type: 'ticker' is not a 'module:Class'"),
        (plugin("tests.daemon.nowhere:Loop"), "daemon.loops.0.type: cannot load"),
        (plugin("tests.daemon.fakes:ManualClock"), "is not a subclass of ExtensionLoop"),
        (plugin("tests.daemon.loops:Flaky", every="x"), "daemon.loops.0.options.every"),
        (plugin("tests.daemon.loops:Ticker", interval=0), "daemon.loops.0.options.interval"),
        (plugin("tests.daemon.loops:Ticker", name="supervisor"), "'supervisor' is reserved"),
        (plugin("tests.daemon.loops:Ticker", name="a b"), "daemon.loops.0.options.name"),
    ],
)
def test_a_bad_loop_is_refused_with_its_key(daemon: settings.DaemonSettings, expected: str) -> None:
    with pytest.raises(errors.PluginError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        extension.resolve_loops(daemon)


def test_two_loops_of_one_name_are_refused() -> None:
    twice = settings.PluginSettings(type="tests.daemon.loops:Ticker")
    with pytest.raises(errors.PluginError, match="two loops are named 'ticker'"):
        extension.resolve_loops(settings.DaemonSettings(loops=(twice, twice)))


def test_a_loop_whose_constructor_raises_is_a_plugin_error() -> None:
    resolved = extension.resolve_loops(plugin("tests.daemon.loops:Flaky", every=0))
    context = extension.LoopContext(store=UnusedStore(), clock=ManualClock(), workspace=())
    with pytest.raises(
        errors.PluginError, match=r"daemon\.loops\.0: tests\.daemon\.loops:Flaky could"
    ):
        extension.build_loops(resolved, context)
