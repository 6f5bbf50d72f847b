"""The `bench` command. Thin: each command group lives in talkbench/commands/ and calls the library."""

from __future__ import annotations

import importlib
import sys

import typer

from talkbench.errors import TalkbenchError

app = typer.Typer(
    name="bench",
    help="talkbench: train, evaluate and compare speech-driven 3D facial animation methods.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# each module defines register(app) and adds its commands or sub-apps
COMMAND_MODULES = (
    "data", "run", "eval", "sweep", "report", "render", "study", "pretrain", "ui", "animate", "import_",
)  # fmt: skip


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"talkbench {version('talkbench')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """talkbench: train, evaluate and compare speech-driven 3D facial animation methods."""

for _name in COMMAND_MODULES:
    importlib.import_module(f"talkbench.commands.{_name}").register(app)


def main() -> None:
    try:
        app()
    except TalkbenchError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
