"""Opening the store when the daemon starts: a store that is down is waited for.

A daemon started before its database (a host booting, a compose stack coming up) retries
with capped exponential backoff and jitter, logging each attempt, instead of exiting; a
store at the wrong schema is not transient and is raised at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from vigil import errors
from vigil.config import settings as settings_mod
from vigil.scheduling import backoff
from vigil.storage import engine
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)


async def open_store_patiently(
    target: engine.StoreTarget,
    policy: settings_mod.BackoffSettings,
    rand: Callable[[], float],
) -> store_mod.Store:
    """The opened store, once reachable; raises only for errors that are not transient."""
    attempt = 0
    while True:
        try:
            return await engine.open_store(target)
        except errors.StoreUnavailable as exc:
            attempt += 1
            delay = backoff.exponential_backoff(
                attempt,
                base=policy.base,
                factor=policy.factor,
                cap=policy.cap,
                jitter=policy.jitter,
                rand=rand,
            )
            logger.warning(
                "store unavailable (attempt %d), retrying in %.1fs: %s",
                attempt,
                delay,
                exc,
                extra={"event": "store.unavailable", "attempt": attempt, "retry_in": delay},
            )
            await anyio.sleep(delay)
