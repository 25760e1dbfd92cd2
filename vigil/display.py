"""User-given strings on one line: what is not printable written as a Python escape."""

from __future__ import annotations


def printable(text: str) -> str:
    """The text with newlines, escapes, line separators... as `\\n`, `\\x1b`, `\\u2028`.

    For names, tags, cursors and keys in tables, text and error lines; JSON output keeps
    the real value.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
