"""`--partition KEY` for the commands that start one run of a job.

A partitioned job's run names its key in the tag `vigil/partition`; the key is checked
against the job's partitions (from the catalog's description, or the loaded job) before
anything is submitted. A partitioned job needs a key; a job without partitions takes none.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vigil import errors, runs

if TYPE_CHECKING:
    from vigil import partitions as partitions_mod

F = TypeVar("F", bound=Callable[..., Any])


def option(fn: F) -> F:
    decorate = click.option(
        "--partition",
        default=None,
        metavar="KEY",
        help="The partition of a partitioned job to run (tagged vigil/partition).",
    )
    return decorate(fn)


def tagged(
    job: str,
    partitions: partitions_mod.PartitionsDef | None,
    tags: dict[str, str],
    key: str | None,
    now: float,
) -> dict[str, str]:
    """The run's tags with its checked partition key (PartitionError, one line, else)."""
    tagged_key = tags.get(runs.TAG_PARTITION)
    if key is not None and tagged_key is not None and tagged_key != key:
        raise errors.PartitionError(
            f"job '{job}': --partition {key!r} and tag {runs.TAG_PARTITION}={tagged_key!r} differ"
        )
    key = key if key is not None else tagged_key
    if partitions is None:
        if key is not None:
            raise errors.PartitionError(f"job '{job}' has no partitions (partition {key!r} given)")
        return tags
    if key is None:
        raise errors.PartitionError(
            f"job '{job}' is partitioned ({partitions.label}): pass --partition KEY "
            f"({_latest(partitions, now)})"
        )
    try:
        partitions.check(key, now)
    except errors.PartitionError as exc:
        raise errors.PartitionError(f"job '{job}': {exc}") from None
    return {**tags, runs.TAG_PARTITION: key}


def _latest(partitions: partitions_mod.PartitionsDef, now: float) -> str:
    from vigil import partitions as partitions_mod  # the definitions, only once a key is asked

    if isinstance(partitions, partitions_mod.StaticPartitions):
        names = partitions.names
        return f"one of {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}"
    latest = partitions.last_complete(datetime.datetime.fromtimestamp(now, datetime.UTC))
    return f"latest: {latest}" if latest is not None else "no partition is complete yet"
