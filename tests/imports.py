"""A probe of what the CLI imports: a program that runs `vigil ARGS...` in-process and then
prints, on its last line of stderr, the modules it imported whose names start so."""

from __future__ import annotations

from collections.abc import Sequence


def probe(prefixes: Sequence[str]) -> str:
    """The probe's source, for `python -c SOURCE ARGS...`."""
    return f"""
import json, sys
from vigil.cli import main
try:
    main.cli(sys.argv[1:], prog_name="vigil")
except SystemExit:
    pass
found = sorted(m for m in sys.modules if m.startswith({tuple(prefixes)!r}))
print(json.dumps(found), file=sys.stderr)
"""
