"""vigil's version, as pyproject.toml gives it (tests/unit/test_cli_lazy.py checks the two
agree): `vigil --version` reads it here instead of scanning the installed distributions."""

VERSION = "0.1.0"
