"""`bench render`: a run's predicted test clip (or several runs side by side) to MP4 with audio."""

from __future__ import annotations

from pathlib import Path

import typer

from talkbench.commands import one_line_command


@one_line_command
def render(
    run: list[str] = typer.Option(..., "--run", help="Run id; repeat --run to render runs side by side."),
    clip: str = typer.Option(..., "--clip", help="Test clip name, e.g. SynthTalk_S11_sentence21."),
    out: Path | None = typer.Option(None, "--out", help="MP4 path (default: renders/<clip>.mp4)."),
    condition: str | None = typer.Option(
        None, "--condition", help="Training speaker for conditioned methods."
    ),
    ground_truth: bool = typer.Option(True, "--gt/--no-gt", help="Add the ground truth as the first panel."),
    size: int = typer.Option(512, "--size", help="Panel size in pixels."),
    samples: int = typer.Option(
        0, "--samples", help="A grid of the first N samples of one run of a method that samples (0: off)."
    ),
    columns: int = typer.Option(5, "--columns", help="Panels per row of the --samples grid."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri"),
) -> None:
    """Render predictions saved by tracked runs with the dataset's camera, muxed with the clip's audio."""
    from talkbench.errors import TalkbenchError
    from talkbench.render import camera_for, render_side_by_side
    from talkbench.runs import TrackedRun

    runs = [TrackedRun.open(r, tracking_uri) for r in run]
    data = runs[0].dataset
    if data.spec.faces is None:
        raise TalkbenchError(f"dataset '{data.spec.name}' has no faces (triangles) to render")
    gt = runs[0].test_clip(clip)
    panels = [("ground truth", gt.vertices)] if ground_truth else []
    if samples > 0:
        if len(runs) != 1:
            raise TalkbenchError(f"--samples renders the samples of one run; got {len(runs)} --run")
        drawn, seeds = runs[0].samples(clip, condition)
        panels += [(f"{runs[0].method} sample {k}", s) for k, s in enumerate(drawn[:samples])]
        for k, seed in enumerate(seeds[:samples]):
            typer.echo(f"sample {k}: seed {seed}")
    else:
        panels += [(r.method, r.prediction(clip, condition)) for r in runs]
    out = out or Path("renders") / f"{clip}.mp4"
    path = render_side_by_side(
        panels, data.spec.faces, out, gt.fps, camera_for(data.spec.name), gt.audio, gt.template, size,
        columns=columns if samples > 0 else None,
    )
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("render")(render)
