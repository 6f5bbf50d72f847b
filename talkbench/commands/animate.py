"""`bench animate`: a trained model (run id, runs:/ or models:/ URI, a model folder, a Hugging Face repo
id in the local cache) animates any WAV."""

from __future__ import annotations

from pathlib import Path

import typer

from talkbench.commands import one_line_errors


def animate_command(
    model: str = typer.Option(
        ...,
        "--model",
        help="RUN_ID, runs:/RUN_ID/model, models:/NAME/VERSION, models:/NAME@ALIAS, a model folder "
        "(bench export) or a Hugging Face repo id in the local cache (never downloaded).",
    ),
    audio: Path = typer.Option(..., "--audio", help="Speech file (any sample rate and channel count)."),
    template: Path | None = typer.Option(
        None,
        "--template",
        help="Neutral face mesh (.npy, .obj or .ply) with the model's vertex count "
        "(default: the first training speaker's template, stored in the model).",
    ),
    condition: str | None = typer.Option(
        None,
        "--condition",
        help="Training speaker whose style to use, or 'all' (default: the first training speaker; "
        "audio-only methods take none).",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output folder (.npy vertices and .mp4 per condition; blendshape models also write their "
        "weights as .blendshapes.npy/.csv (ARKit names)/.json (three.js AnimationClip)).",
    ),
    no_render: bool = typer.Option(False, "--no-render", help="Write the .npy only, no video."),
    n_samples: int = typer.Option(
        1,
        "--samples",
        help="Animations per condition of a method that samples (FaceDiffuser, CodeTalker-ND), written "
        "as <stem>_sample<k> with <name>.seeds.csv (the seed of each); deterministic methods animate once.",
    ),
    seed: int = typer.Option(
        0, "--seed", help="The seed the samples' seeds derive from (with the name, condition and k)."
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
) -> None:
    """Animate a WAV with a trained model: (T, V, 3) vertices as .npy and an MP4 with the audio.

    Defaults: the template is the first training speaker's (stored in the model at training time),
    the condition the first training speaker. Audio far from the training audio (e.g. real speech on
    a SynthTalk model) is animated with a warning.
    """
    with one_line_errors():
        from talkbench import load_model
        from talkbench.animate import animate, load_audio

        python_model = load_model(model, tracking_uri)
        bundle = python_model.bundle
        samples, note = load_audio(audio)
        typer.echo(note)
        face = template if template is not None else bundle.default_template
        if template is None:
            typer.echo(f"template: training speaker {bundle.spec.train_subjects[0]}'s (stored in the model)")
        result = animate(
            python_model.method,
            bundle.spec,
            samples,
            face,
            conditions=condition,
            out_dir=out,
            render=not no_render,
            name=audio.stem,
            reference=bundle.reference,
            progress=typer.echo,
            samples=n_samples,
            seed=seed,
        )
    for message in result.warnings:
        typer.secho(f"warning: audio unlike the training audio ({message})", err=True, fg=typer.colors.YELLOW)
    for paths in result.weights.values():
        typer.echo("  ".join(str(p) for p in paths) + f" ({result.n_frames} frames of blendshape weights)")
    for cond, path in result.predictions.items():
        video = result.videos.get(cond)
        typer.echo(f"{path} ({result.n_frames} frames)" + (f"  {video}" if video else ""))
    for cond, paths in result.samples.items():
        videos = result.sample_videos.get(cond, [])
        for k, path in enumerate(paths):
            video = f"  {videos[k]}" if k < len(videos) else ""
            typer.echo(f"{path} ({result.n_frames} frames, sample {k}){video}")
    if result.seeds is not None:
        typer.echo(f"{result.seeds} (the seed of every sample)")
    for extra in result.notes:
        typer.echo(extra)


def register(app: typer.Typer) -> None:
    app.command("animate")(animate_command)
