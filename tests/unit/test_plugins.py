"""Pluggable classes by short name or module:Class, options validated by their own model."""

from __future__ import annotations

import pytest

from vigil import errors, launchers, plugins
from vigil.config import settings


def build(spec: str, **options: object) -> tuple[type[launchers.RunLauncher], object]:
    return plugins.build(
        "run_launcher",
        settings.PluginSettings(type=spec, options=options),
        launchers.BUILTIN_LAUNCHERS,
        launchers.RunLauncher,
    )


def test_short_name_resolves_builtin() -> None:
    cls, options = build("subprocess")
    assert cls is launchers.SubprocessLauncher
    assert isinstance(options, launchers.SubprocessLauncher.Options)


def test_module_colon_class_resolves_a_users_class() -> None:
    cls, _ = build("tests.plugins.recording_launcher:RecordingLauncher", note="hi")
    assert cls.__name__ == "RecordingLauncher"


def test_unknown_short_name_lists_the_builtins() -> None:
    with pytest.raises(errors.PluginError, match=r"unknown run_launcher 'kubernetes'.*subprocess"):
        build("kubernetes")


def test_unimportable_class_is_a_plugin_error() -> None:
    with pytest.raises(errors.PluginError, match=r"cannot load 'nowhere.at_all:Thing'"):
        build("nowhere.at_all:Thing")


def test_class_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(errors.PluginError, match="not a subclass of RunLauncher"):
        build("collections:OrderedDict")


def test_options_are_validated_by_the_class_model() -> None:
    with pytest.raises(errors.PluginError, match=r"run_launcher\.options\.colour: Extra inputs"):
        build("subprocess", colour="red")
