"""Where the instance lives: `VIGIL_HOME`, else `./.vigil` (imports nothing heavy, for the
CLI's group callback)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping


def from_env(environ: Mapping[str, str]) -> pathlib.Path:
    return pathlib.Path(environ.get("VIGIL_HOME", ".vigil")).absolute()
