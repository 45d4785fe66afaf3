"""A click group that imports a command's module only when that command runs.

`p2pchan payments` must not pay for importing the layer-1 server, the node, Plasma, the bench
and chaos packages (about half a second of imports on a small machine; docs/BENCHMARKS.md,
"CLI start-up"), so the root group knows each command by an entry of `command_index.py` (its
name, the module that defines it, and the one-line summary `--help` lists) and imports the
module in `get_command`, which click calls only for the command it is about to run or show.

`p2pchan --help` lists every command from the summaries alone, laid out as click lays out a
group whose commands are loaded (same truncation at the same width); a test checks both that
each summary is the first paragraph of its command's help and that the listing is the same.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class CommandEntry:
    """Where the command `name` lives (`module`'s attribute `attribute`), and its summary: the
    first paragraph of its help, on one line."""

    name: str
    module: str
    attribute: str
    summary: str


class LazyGroup(click.Group):
    """A group whose commands are `CommandEntry`s, imported on first use."""

    def __init__(self, *args: Any, index: Iterable[CommandEntry] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index = {entry.name: entry for entry in index}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.index, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        loaded = self.commands.get(cmd_name)
        if loaded is not None:
            return loaded
        entry = self.index.get(cmd_name)
        if entry is None:
            return None
        command = load_command(entry)
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """What `click.Group.format_commands` prints, from the summaries: no command imported."""
        listed = [(name, self._for_listing(name)) for name in self.list_commands(ctx)]
        shown = [(name, command) for name, command in listed if not command.hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _command in shown)
        rows = [(name, command.get_short_help_str(limit)) for name, command in shown]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _for_listing(self, name: str) -> click.Command:
        """The loaded command if it is, else a stand-in with its summary as help."""
        loaded = self.commands.get(name)
        if loaded is not None:
            return loaded
        return click.Command(name, help=self.index[name].summary)


def load_command(entry: CommandEntry) -> click.Command:
    """Import the entry's module and return its command."""
    command = getattr(importlib.import_module(entry.module), entry.attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{entry.module}.{entry.attribute} is not a click command")
    return command
