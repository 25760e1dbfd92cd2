"""Text output: user-given strings stay on their line."""

from __future__ import annotations

import pytest

from vigil import runs
from vigil.cli import render


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, with spaces", "plain text, with spaces"),
        ("two\nlines", "two\\nlines"),
        ("tab\there", "tab\\there"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("line\u2028separator", "line\\u2028separator"),
        ("carriage\rreturn", "carriage\\rreturn"),
        ("ünïcödé ✓", "ünïcödé ✓"),
    ],
)
def test_printable(text: str, shown: str) -> None:
    assert render.printable(text) == shown
    assert "\n" not in render.printable(text)


def test_run_detail_shows_tags_with_newlines_escaped_and_json_keeps_them() -> None:
    run = runs.Run(
        run_id="r1",
        job_name="hello",
        status=runs.RunStatus.SUCCESS,
        tags={"team\nx": "data\nengineering", "plain": "v"},
    )
    detail = render.run_detail(run, [], now=0.0)
    assert "tags      plain=v, team\\nx=data\\nengineering" in detail.splitlines()
    assert render.run_dict(run)["tags"] == {"team\nx": "data\nengineering", "plain": "v"}
