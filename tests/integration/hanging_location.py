"""A code location whose import never ends (it waits for an event nobody sets)."""

from __future__ import annotations

import threading

threading.Event().wait()
