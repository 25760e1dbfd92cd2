"""A click group that imports a subcommand's module only when that subcommand runs.

`vigil daemon status` should not pay for importing the executors, the launchers or the
HTTP server; each command module is imported when its command is invoked. The group's
`--help` lists its commands from `summaries` (each command's first line of help, given
beside its import path) and imports none of them; a command without a summary is loaded
to ask it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click


class LazyGroup(click.Group):
    def __init__(
        self,
        *args: Any,
        lazy_subcommands: Mapping[str, str],
        summaries: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy_subcommands)  # name -> "module:attribute"
        self.summaries = dict(summaries or {})  # name -> the command's first line of help

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's command list, the summaries standing in for the commands' own help."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, self._short_help(ctx, name, limit)) for name in names]
        shown = [(name, text) for name, text in rows if text is not None]
        if shown:
            with formatter.section("Commands"):
                formatter.write_dl(shown)

    def _short_help(self, ctx: click.Context, name: str, limit: int) -> str | None:
        """The command's short help (None: a hidden command)."""
        if name in self.summaries:
            return click.Command(name, help=self.summaries[name]).get_short_help_str(limit)
        command = self.get_command(ctx, name)
        if command is None or command.hidden:
            return None
        return command.get_short_help_str(limit)

    def _load(self, cmd_name: str) -> click.Command:
        module_name, _, attribute = self._lazy[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self._lazy[cmd_name]} is not a click command")
        return command
