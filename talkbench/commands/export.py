"""`bench export`: a trained model as a folder to hand to someone outside MLflow."""

from __future__ import annotations

from pathlib import Path

import typer

from talkbench.commands import one_line_command

FORMATS = ("hf",)


@one_line_command
def export_command(
    model: str = typer.Option(
        ...,
        "--model",
        help="RUN_ID, runs:/RUN_ID/model, models:/NAME/VERSION, models:/NAME@ALIAS or a folder.",
    ),
    fmt: str = typer.Option("hf", "--format", help="hf: a Hugging Face-style folder with a model card."),
    out: Path = typer.Option(..., "--out", help="The folder to write (new or empty)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
) -> None:
    """Export a trained model as a Hugging Face-style folder with a model card.

    config.json, model.safetensors, the training speakers' templates, a README.md model card (method,
    paper, data, licences, metrics with CIs, out-of-domain thresholds) and a manifest of sha256 per
    file; `bench animate --model DIR` and talkbench.load_model(DIR) read it, verified."""
    from talkbench.errors import ConfigError
    from talkbench.hf_export import export_hf

    if fmt not in FORMATS:
        raise ConfigError(f"--format '{fmt}': expected one of {', '.join(FORMATS)}")
    folder = export_hf(model, out, tracking_uri)
    typer.echo(f"exported {model} to {folder} ({len(list(folder.iterdir()))} files, sha256 in manifest.json)")


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
