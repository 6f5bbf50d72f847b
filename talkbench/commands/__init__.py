"""Command groups of the `bench` CLI, one module each (``register(app)``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from talkbench.errors import TalkbenchError


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Bad input -> ``error: <reason>`` on stderr and exit code 2 (also under typer's CliRunner)."""
    try:
        yield
    except TalkbenchError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


def one_line_command(fn):
    """Decorator form of ``one_line_errors`` for a whole command."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_line_errors():
            return fn(*args, **kwargs)

    return wrapper
