"""The VIGIL_* names: how a variable names a setting, and the ones that are not settings.

Kept apart from `environment` (which walks the settings model) so the quick path of the
read commands (`quick`) can tell them apart without importing pydantic.
"""

from __future__ import annotations

PREFIX = "VIGIL_"
DELIMITER = "__"
HOME = "VIGIL_HOME"
# VIGIL_* variables that are not settings (fault injection in the crash tests), and prefixes
# of such families (the test suite's own: VIGIL_TEST_POSTGRES_URL, VIGIL_TEST_PG_BIN, ...).
NOT_SETTINGS = frozenset({"VIGIL_CRASH_AT", "VIGIL_CRASH_MARKER"})
NOT_SETTINGS_PREFIXES = ("VIGIL_TEST_",)


def is_not_setting(upper: str) -> bool:
    """A VIGIL_* variable (in capitals) that vigil or its tests read but is no setting."""
    return upper in NOT_SETTINGS or upper.startswith(NOT_SETTINGS_PREFIXES)
