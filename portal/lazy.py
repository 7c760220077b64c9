"""Commands imported only when they run or show their own help, so ``portal --help`` stays fast.

A plugin registers ``LazyCommand("logs", "portal.logs.cli:logs", "Query stored logs.")``: the
short help is given here (a test checks it matches the command's own), the module loads later.
"""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyCommand(click.Command):
    """Stands in for ``module:attr`` in listings; everything else goes to the real command."""

    def __init__(self, name: str, target: str, short_help: str) -> None:
        super().__init__(name, short_help=short_help, help=short_help)
        self.target = target
        self._real: click.Command | None = None

    def real(self) -> click.Command:
        """The command itself (imports its module on first use)."""
        if self._real is None:
            module, _, attr = self.target.partition(":")
            command = getattr(importlib.import_module(module), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.target} is not a click command")
            self._real = command
        return self._real

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        return self.real().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        return self.real().invoke(ctx)
