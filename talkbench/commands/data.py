"""`bench data ...`: make SynthTalk, convert the VOCASET release, check a dataset directory."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from talkbench.errors import ConfigError

data_app = typer.Typer(help="Make, convert and check datasets.", no_args_is_help=True)


class Preset(StrEnum):
    tiny = "tiny"
    small = "small"
    full = "full"


class Variant(StrEnum):
    main = "main"
    topology2 = "topology2"
    blendshape = "blendshape"


@data_app.command("make")
def make(
    dataset: str = typer.Argument(..., help="Dataset to generate: synthtalk."),
    preset: Preset = typer.Option(Preset.small, help="Size preset."),
    seed: int = typer.Option(0, help="Random seed (same seed and parameters = identical files)."),
    style_coupling: float = typer.Option(
        0.8, min=0.0, max=1.0, help="Share of speaking style audible in the voice."
    ),
    out: Path | None = typer.Option(
        None, help="Output directory (default: the cache under $TALKBENCH_HOME)."
    ),
    variant: Variant = typer.Option(
        Variant.main,
        help="main; topology2 (a second face mesh: dataset synthtalk-topology2); blendshape (ARKit-named "
        "rig weights as targets: dataset synthtalk-blendshape). Each has its own speakers.",
    ),
) -> None:
    """Generate the embedded SynthTalk dataset (or one of its variants)."""
    if dataset != "synthtalk":
        raise ConfigError(f"bench data make: unknown dataset '{dataset}'; only 'synthtalk' can be generated")
    from talkbench.datasets import synthtalk

    opts = {"preset": preset.value, "seed": seed, "style_coupling": style_coupling, "variant": variant.value}
    if out is None:
        path = synthtalk.ensure_synthtalk(**opts)
    else:
        synthtalk.generate(out, **opts)
        path = out
    name = synthtalk.dataset_name(variant.value)
    typer.echo(f"{name} {preset.value} (seed {seed}, style_coupling {style_coupling:g}) at {path}")


PREPARABLE = ("vocaset", "multiface", "3dmead")


@data_app.command("prepare")
def prepare(
    dataset: str = typer.Argument(..., help="Dataset release to convert: vocaset, multiface or 3dmead."),
    raw: Path = typer.Option(
        ...,
        help="Directory with the release (vocaset: data_verts.npy, ...; multiface: the subject folders; "
        "3dmead: ProbTalk3D's param/ and wav/).",
    ),
    out: Path = typer.Option(..., help="Output directory of the prepared layout."),
    regions: Path | None = typer.Option(
        None, help="Directory of region index files (or Multiface masks) to copy into out/regions."
    ),
    flame: Path | None = typer.Option(
        None, help="3dmead: the FLAME model as .npz (converted once from generic_model.pkl)."
    ),
    flame_shape: str = typer.Option("zero", help="3dmead: 'zero' shape (ProbTalk3D) or 'subject'."),
    units: str = typer.Option("facediffuser", help="multiface: 'facediffuser' [-1, 1] box or 'metres'."),
) -> None:
    """Convert an official release to the prepared layout (wav/, vertices_npy/, templates.pkl)."""
    if dataset not in PREPARABLE:
        hint = (
            " (BIWI: run CodeTalker's preprocessing, then point --data-root at its output)"
            if dataset == "biwi"
            else ""
        )
        raise ConfigError(
            f"bench data prepare: unknown dataset '{dataset}'; expected one of {', '.join(PREPARABLE)}{hint}"
        )
    if dataset == "vocaset":
        from talkbench.datasets.prepare_vocaset import prepare_vocaset

        report = prepare_vocaset(raw, out, regions=regions)
        skipped = report.skipped_no_audio
    elif dataset == "multiface":
        from talkbench.datasets.prepare_multiface import prepare_multiface

        report = prepare_multiface(raw, out, regions=regions, units=units)
        skipped = report.skipped
    else:
        from talkbench.datasets.prepare_mead import prepare_3dmead

        report = prepare_3dmead(raw, out, flame=flame, regions=regions, shape=flame_shape)
        skipped = report.skipped
    typer.echo(f"wrote {report.written} sequences to {out}")
    if skipped:
        typer.echo(f"skipped {len(skipped)} sequences without audio")


@data_app.command("check")
def check(
    root: Path = typer.Argument(..., help="Dataset directory to validate."),
    kind: str | None = typer.Option(
        None, "--dataset", help="synthtalk|vocaset|biwi|multiface|3dmead|prepared (default: detect)."
    ),
) -> None:
    """Validate a dataset directory: print a summary, or every problem found (exit code 1)."""
    from talkbench.datasets.check import check_dataset

    result = check_dataset(root, kind)
    typer.echo(result.format())
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


__all__ = ["register"]
