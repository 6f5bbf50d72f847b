"""`bench import`: an official checkpoint (FaceFormer, CodeTalker (also into CodeTalker-ND), MemoryTalker,
SelfTalk, FaceDiffuser, UniTalker) as a talkbench run."""

from __future__ import annotations

from pathlib import Path

import typer

from talkbench.commands import one_line_errors


def import_command(
    method: str = typer.Option(
        ...,
        "--method",
        "-m",
        help="faceformer, codetalker, codetalker-nd (CodeTalker's files), memorytalker, selftalk, "
        "facediffuser, unitalker, or a plugin with an importer.",
    ),
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="The official checkpoint file (.pth / .pth.tar)."
    ),
    vqvae: Path | None = typer.Option(
        None, "--vqvae", help="CodeTalker(-ND): the stage-1 VQ-VAE file (its stage-2 file carries none)."
    ),
    preset: str = typer.Option(
        ..., "--preset", "-p", help="paper-vocaset, paper-biwi; UniTalker: paper-b, paper-l (with --dataset)."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="UniTalker: the dataset whose head is imported (vocaset, biwi, ...)."
    ),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Prepared dataset: the test split is evaluated (else the model only)."
    ),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Dotted config override KEY=VALUE (repeatable), as for bench run."
    ),
    register: str | None = typer.Option(None, "--register", help="Add the model to the Model Registry."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
) -> None:
    """Load an official checkpoint (weights_only), log it as a run tagged imported with an MLflow
    model, and evaluate it on the test split when --data-root is given (no training)."""
    with one_line_errors():
        from talkbench.official_import import import_official

        result = import_official(
            method,
            preset,
            checkpoint,
            vqvae=vqvae,
            data_root=data_root,
            overrides=overrides or [],
            tracking_uri=tracking_uri,
            register=register,
            dataset=dataset,
        )
    typer.echo(f"run {result.run_id} ({result.experiment}): {method} (official checkpoint)")
    typer.echo(
        f"model: {result.model_uri}" + (f"  registered: {result.registered}" if result.registered else "")
    )
    if result.metrics:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()) if "ci" not in k)
        typer.echo(f"test: {shown}")
    else:
        typer.echo("not evaluated (no --data-root): it shows on the leaderboard once evaluated")


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
