"""A code location that fails to import."""

from __future__ import annotations

import vigil_no_such_module  # type: ignore[import-not-found]  # noqa: F401
