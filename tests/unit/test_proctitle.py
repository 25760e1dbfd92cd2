"""Process names: the kind, the run's short id and as much of the job or step as fits."""

from __future__ import annotations

from vigil import proctitle


def test_a_name_is_cut_at_the_kernels_15_bytes() -> None:
    assert proctitle.title("w", "1a2b3c4d-5e6f", "etl") == "w:1a2b3c4d:etl"
    assert proctitle.title("s", "1a2b3c4d-5e6f", "load_orders") == "s:1a2b3c4d:load"


def test_a_name_never_ends_in_half_a_character() -> None:
    assert proctitle.title("s", "1a2b3c4d", "abcé") == "s:1a2b3c4d:abc"  # é takes 2 bytes
