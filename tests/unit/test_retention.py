"""Retention, pure: ages as people type them, the rule the settings make, run directories."""

from __future__ import annotations

import pathlib

import pydantic
import pytest

from vigil import blobs, retention, runs
from vigil.config import settings as settings_mod

S = runs.RunStatus
DAY = 86400.0


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("30d", 30 * DAY), ("12h", 43200.0), ("90m", 5400.0), ("45s", 45.0), ("2w", 14 * DAY)],
)
def test_ages(raw: str, seconds: float) -> None:
    assert retention.parse_age(raw) == seconds


@pytest.mark.parametrize("raw", ["30", "d", "30x", "-1d", "0d", "3651d", "1e3d", " "])
def test_bad_ages_say_what_is_accepted(raw: str) -> None:
    with pytest.raises(ValueError, match="give a number and a unit"):
        retention.parse_age(raw)


def test_the_default_keeps_every_run() -> None:
    kept = settings_mod.RunRetentionSettings()
    assert retention.rule_from_settings(kept, 1000 * DAY, spare_retries=True) is None


def test_each_age_set_is_a_cutoff() -> None:
    kept = settings_mod.RunRetentionSettings(success_days=30, canceled_days=1, batch_size=7)
    rule = retention.rule_from_settings(kept, 1000 * DAY, spare_retries=False)
    assert rule == retention.Rule({S.SUCCESS: 970 * DAY, S.CANCELED: 999 * DAY}, 7, False)


@pytest.mark.parametrize(
    "values", [{"success_days": 0}, {"failure_days": 4000}, {"batch_size": 0}, {"x": 1}]
)
def test_settings_are_bounded(values: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        settings_mod.RunRetentionSettings.model_validate(values)


def test_a_rule_never_names_a_status_that_has_not_ended() -> None:
    with pytest.raises(ValueError, match="only ended runs"):
        retention.Rule({S.QUEUED: 1.0})


def test_only_plain_run_ids_name_directories() -> None:
    assert retention.names_directory("abc")
    for bad in ("", ".", "..", "a/b", "a\\b"):
        assert not retention.names_directory(bad)


def test_remove_files_counts_what_existed(tmp_path: pathlib.Path) -> None:
    (tmp_path / "logs" / "r1" / "step").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "logs" / "r2").symlink_to(tmp_path / "outside")
    roots = [blobs.LocalRoot(tmp_path / "logs"), blobs.LocalRoot(tmp_path / "storage")]
    assert retention.remove_files(["r1", "r2", "r3"], roots) == 1
    assert not (tmp_path / "logs" / "r1").exists()
    assert (tmp_path / "outside").is_dir()  # a link is never followed
