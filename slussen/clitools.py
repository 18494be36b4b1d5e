"""What every `slussen` command module shares: the one-line failure, and the app a command works on.

A capability's own command group (`slussen directory …`, `slussen evaluation …`) is registered by
`slussen.cli`, which puts the app factory in the click context. So the capability asks
`command_app()` for the app and never imports `slussen.app` or `slussen.cli`, which sit above it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from flask import Flask

from slussen.privatefiles import remove_stale_parts

AppFactory = Callable[[], Flask]


class Failure(click.ClickException):
    """One line on stderr, exit code 1."""

    def format_message(self) -> str:
        return self.message


def command_app() -> Flask:
    """Build the app for the running command with the factory `slussen.cli` put in the root
    click context; refuses (RuntimeError) outside a `slussen` command."""
    factory = click.get_current_context().find_root().obj
    if not callable(factory):
        raise RuntimeError("a slussen command group runs only under the `slussen` command")
    app: Flask = factory()
    return app


def clear_stale_parts(folder: Path, name: str = "*") -> None:
    """Remove the part files an interrupted run left in `folder` (`.<name>.*.part`), saying so
    on stderr."""
    removed = remove_stale_parts(folder, name)
    if removed:
        click.echo(
            f"Removed {len(removed)} unfinished file(s) an interrupted run left in {folder}: "
            + ", ".join(p.name for p in removed),
            err=True,
        )
