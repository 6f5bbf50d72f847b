"""`bench eval`: score a folder of predicted vertex sequences without training anything.

Files are named as the reference code names them: ``<clip>.npy`` or ``<clip>_condition_<Subject>.npy``,
arrays (T, V*3) or (T, V, 3) at the dataset's motion rate. Every file is checked before any score is
computed; problems are listed per file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

from talkbench.commands import one_line_errors
from talkbench.errors import DataError

CONDITION_SEP = "_condition_"


@dataclass(frozen=True)
class PredictionFile:
    path: Path
    clip: str
    condition: str | None


def parse_prediction_name(path: Path) -> PredictionFile:
    """``<clip>.npy`` -> (clip, None); ``<clip>_condition_<Subject>.npy`` -> (clip, Subject)."""
    stem = path.stem
    clip, sep, cond = stem.rpartition(CONDITION_SEP)
    if sep and clip and cond:
        return PredictionFile(path, clip, cond)
    return PredictionFile(path, stem, None)


def check_prediction(pf: PredictionFile, known: Mapping[str, int], n_vertices: int, split: str) -> str | None:
    """The first problem with one prediction file, or None (reads the whole file: NaNs anywhere)."""
    if pf.clip not in known:
        return f"unknown clip name '{pf.clip}' (not in split '{split}')"
    try:
        arr = np.load(pf.path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        return f"not a readable .npy array ({exc})"
    if arr.ndim == 2 and arr.shape[1] == n_vertices * 3:
        pass
    elif arr.ndim == 3 and arr.shape[1:] == (n_vertices, 3):
        pass
    else:
        return f"shape {arr.shape}: expected (T, {n_vertices * 3}) or (T, {n_vertices}, 3)"
    if arr.shape[0] == 0:
        return "has no frames"
    if not np.issubdtype(arr.dtype, np.floating):
        return f"dtype {arr.dtype}: expected floating-point vertex positions"
    bad = ~np.isfinite(np.asarray(arr).reshape(arr.shape[0], -1)).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        return f"contains NaN or inf in {int(bad.sum())} of {arr.shape[0]} frames (first at frame {first})"
    return None


class _ClipsByName(Mapping):
    """Clips of a split view by name, loaded on access (memory-mapped by the dataset)."""

    def __init__(self, view):
        self.view = view
        self.index = {ref.name: i for i, ref in enumerate(view.refs)}

    def __getitem__(self, name):
        return self.view[self.index[name]]

    def __contains__(self, name) -> bool:
        return name in self.index

    def __iter__(self):
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


def _fmt(v: float) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.4g}"


def eval_command(
    pred: Path = typer.Option(
        ..., "--pred", help="Folder of predicted .npy files (<clip>[_condition_<Subject>].npy)."
    ),
    dataset: str = typer.Option(..., "--dataset", "-d", help="synthtalk, vocaset or biwi."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Prepared dataset directory."),
    split: str = typer.Option("test", "--split", help="Split the predictions belong to."),
    out: Path | None = typer.Option(None, "--out", help="Write the per-sequence table to this CSV file."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the 95% CIs (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Score the valid files even if others are invalid (they are listed)."
    ),
) -> None:
    """Score predicted vertex sequences against a dataset split and print the aggregate table."""
    with one_line_errors():
        from talkbench.datasets import load_dataset
        from talkbench.metrics import evaluate, load_alignments

        if not pred.is_dir():
            raise DataError(f"--pred {pred}: no such directory")
        files = sorted(pred.glob("*.npy"))
        if not files:
            raise DataError(
                f"--pred {pred}: no .npy files (expected <clip>.npy or <clip>_condition_<Subject>.npy)"
            )
        ds = load_dataset(dataset, root=data_root)
        spec = ds.spec
        view = ds.split(split)
        clips = _ClipsByName(view)

        parsed = [parse_prediction_name(f) for f in files]
        problems = [(pf, check_prediction(pf, clips.index, spec.n_vertices, split)) for pf in parsed]
        bad = [(pf, p) for pf, p in problems if p]
        for pf, p in bad:
            typer.secho(f"{pf.path}: {p}", err=True, fg=typer.colors.YELLOW)
        good = [pf for pf, p in problems if not p]
        if bad and not skip_invalid:
            raise DataError(
                f"{len(bad)} of {len(files)} prediction files are invalid (listed above); "
                "fix them or pass --skip-invalid to score the others"
            )
        if not good:
            raise DataError(f"--pred {pred}: no valid prediction files")
        missing = sorted(set(clips.index) - {pf.clip for pf in good})
        if missing:
            typer.secho(
                f"note: {len(missing)} of {len(clips)} clips of split '{split}' have no prediction "
                f"(e.g. {', '.join(missing[:3])}); scoring the {len(clips) - len(missing)} that do",
                err=True,
            )

        root = getattr(ds, "root", None)
        alignments = None
        if root is not None and (Path(root) / "alignments").is_dir():
            alignments = load_alignments(Path(root) / "alignments")

        def stream():
            for pf in good:
                yield pf.clip, pf.condition, np.load(pf.path, mmap_mode="r", allow_pickle=False)

        ev = evaluate(stream(), spec, clips, alignments=alignments, n_boot=n_boot, seed=seed)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            ev.per_sequence.to_csv(out, index=False)
        _print(ev, spec.name, split, len(good))


def _print(ev, dataset: str, split: str, n_files: int) -> None:
    from rich.console import Console
    from rich.table import Table

    df = ev.per_sequence
    conds = sorted(c for c in df["condition"].dropna().unique())
    title = (
        f"{dataset}/{split}: {n_files} predictions, {df['clip'].nunique()} clips, "
        f"{df['n_frames'].sum()} frames"
        + (f", {len(conds)} conditions (mean over conditions)" if ev.conditioned else "")
    )
    table = Table(title=title)
    cols = ["metric", "value", "95% CI", "x scale", "unit", "better"]
    if ev.conditioned:
        cols += ["cond min", "cond max", "cond std"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("metric", "unit", "better") else "right")
    arrows = {"lower": "lower", "higher": "higher", "zero": "closer to 0"}
    for _, r in ev.to_table().iterrows():
        row = [
            r["metric"],
            _fmt(r["value"]),
            f"[{_fmt(r['ci_lo'])}, {_fmt(r['ci_hi'])}]",
            f"{r['scale']:g}",
            r["unit"],
            arrows[r["direction"]],
        ]
        if ev.conditioned:
            row += [_fmt(r["cond_min"]), _fmt(r["cond_max"]), _fmt(r["cond_std"])]
        table.add_row(*row)
    console = Console(soft_wrap=False)
    if not console.is_terminal:
        console = Console(soft_wrap=False, width=160)
    console.print(table)
    for name, why in ev.skipped.items():
        console.print(f"skipped {name}: {why}")
    console.print(
        f"region digest {ev.region_digest}; metric versions "
        + ", ".join(f"{k}@v{v}" for k, v in ev.metric_versions.items())
    )


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
