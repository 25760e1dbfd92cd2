"""The schema revision this vigil expects, apart from the schema so that reading it imports
no SQLAlchemy (the read commands' quick look at the store, `glance`, checks it)."""

from __future__ import annotations

HEAD = "0008"
