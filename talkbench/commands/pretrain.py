"""`bench pretrain-encoder`: pretrain (once) the SynthTalk speech encoder that stands in for wav2vec2."""

from __future__ import annotations

import typer

from talkbench.commands import one_line_command


@one_line_command
def pretrain_encoder(
    preset: str = typer.Option("default", "--preset", help="default (used by methods) or tiny (seconds)."),
    seed: int = typer.Option(0, "--seed", help="Data and training seed."),
    epochs: int | None = typer.Option(None, "--epochs", help="Override the preset's epochs."),
    threads: int = typer.Option(
        1, "--threads", help="CPU threads (1: the same weights on every machine, and fastest on a busy one)."
    ),
    force: bool = typer.Option(False, "--force", help="Pretrain again even if the checkpoint is cached."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)."
    ),
) -> None:
    """Pretrain the SynthTalk encoder on held-apart speakers (frame phoneme classification), or reuse the
    cached one; prints the checkpoint, its held-out frame phoneme error and its MLflow run."""
    from talkbench.errors import ConfigError
    from talkbench.speech_pretrain.cache import ensure_pretrained_encoder
    from talkbench.speech_pretrain.config import preset_config
    from talkbench.speech_pretrain.train import PER_METRIC, WALL_METRIC

    if threads < 1:
        raise ConfigError(f"--threads: expected a positive integer, got {threads}")
    overrides = {"seed": seed} | ({"epochs": epochs} if epochs is not None else {})
    cfg = preset_config(preset, **overrides)
    result = ensure_pretrained_encoder(cfg, tracking_uri=tracking_uri, force=force, threads=threads)
    m = result.meta
    state = "cached" if result.cached else f"pretrained in {m[WALL_METRIC]:.0f} s"
    typer.echo(f"synthtalk encoder ({state}): {result.path}")
    typer.echo(f"held-out frame phoneme error {100 * m[PER_METRIC]:.2f} % on {m['heldout_frames']} frames; "
               f"{m['n_parameters']} encoder parameters; MLflow run {m['run_id']}")


def register(app: typer.Typer) -> None:
    app.command("pretrain-encoder")(pretrain_encoder)
