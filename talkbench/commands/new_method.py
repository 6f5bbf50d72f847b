"""`bench new-method`: scaffold an installable plugin package for a new method."""

from __future__ import annotations

from pathlib import Path

import typer

from talkbench.commands import one_line_command


@one_line_command
def new_method_command(
    name: str = typer.Argument(..., help="The method's name, e.g. gru (lower case, words joined by '-')."),
    out: Path | None = typer.Option(
        None, "--out", help="Folder to write (new or empty; default ./talkbench-NAME)."
    ),
) -> None:
    """Write an installable plugin package for a new method: entry point, model, presets, a kit test."""
    from talkbench.scaffold import write_plugin

    folder = out if out is not None else Path(f"talkbench-{name}")
    files = write_plugin(name, folder)
    for path in files:
        typer.echo(f"wrote {path}")
    typer.echo(
        f"next: pip install -e {folder} && (cd {folder} && pytest) && bench run --method {name} --preset tiny"
    )


def register(app: typer.Typer) -> None:
    app.command("new-method")(new_method_command)
