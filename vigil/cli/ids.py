"""Run ids as people type them: a unique prefix of at least MIN_PREFIX characters stands
for the whole id; tables show the first SHORT characters (`--json` keeps whole ids)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vigil import errors

if TYPE_CHECKING:
    from vigil.storage import store as store_mod

MIN_PREFIX = 4
SHORT = 8
SHOWN_CANDIDATES = 5  # ids named in the error of an ambiguous prefix


def short(run_id: str) -> str:
    return run_id[:SHORT]


async def resolve_run_id(store: store_mod.Glance, given: str) -> str:
    """The run id that `given` is, or is the unique prefix of (NotFound when it is the
    prefix of several). An id that matches nothing is returned as given: reading it
    then fails with the store's own "no run" error."""
    if len(given) < MIN_PREFIX:
        return given
    found = await store.run_ids_with_prefix(given, SHOWN_CANDIDATES + 1)
    if given in found or not found:
        return given
    if len(found) == 1:
        return found[0]
    raise errors.NotFound(_ambiguous(given, found))


def _ambiguous(given: str, found: list[str]) -> str:
    names = ", ".join(found[:SHOWN_CANDIDATES])
    more = ", ..." if len(found) > SHOWN_CANDIDATES else ""
    return f"run id prefix {given!r} is ambiguous: {names}{more}"
