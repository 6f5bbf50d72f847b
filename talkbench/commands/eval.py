"""`bench eval`: score a folder of predicted vertex sequences without training anything; or, given
``--run`` and no ``--pred``, re-predict that run's test split with its logged model under other
inference settings (``--set``: a sampler, a seed set of the samples) as its own run (reevaluate.py).

Files are named as the reference code names them: ``<clip>.npy`` or ``<clip>_condition_<Subject>.npy``,
arrays (T, V*3) or (T, V, 3) at the dataset's motion rate. Every file is checked before any score is
computed; problems are listed per file: unreadable files, unknown clips, conditions that are not a
training speaker, wrong shapes or dtypes, NaNs, and predictions shorter than half their clip (unless
--allow-short). A length that differs from the clip's by more than one frame is listed as a note.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import typer

from talkbench.commands import one_line_errors
from talkbench.contract import PREDICTION_SUFFIX, parse_prediction_file, prediction_file
from talkbench.errors import DataError

FRAME_TOLERANCE = 1  # the audio-length rule and the capture can differ by one frame
MIN_LENGTH_SHARE = 0.5  # shorter than this share of its clip: an error unless --allow-short
UNKNOWN_CLIP = "unknown clip name"


@dataclass(frozen=True)
class PredictionFile:
    path: Path
    clip: str
    condition: str | None


def prediction_files(folder: Path) -> list[PredictionFile]:
    """The ``.npy`` files of a folder, named as :func:`talkbench.contract.prediction_file` names them."""
    files = sorted(folder.glob("*" + PREDICTION_SUFFIX))
    return [PredictionFile(f, *_names(f.name)) for f in files]


def _names(filename: str) -> tuple[str, str | None]:
    name = parse_prediction_file(filename)
    return name.clip, name.condition


@dataclass
class FileCheck:
    """What is wrong with one prediction file (``problem``: it cannot be scored) and what is only odd."""

    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def read_prediction(path: Path) -> np.ndarray:
    """The array of one file, memory-mapped; a DataError for anything that is not a plain .npy array."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # any failure to read a user's file is that file's problem
        # (a 0-byte file raises EOFError, a truncated one ValueError, a folder OSError, ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
        raise DataError(f"not a readable .npy array ({type(exc).__name__}: {reason})") from None


def check_prediction(
    pf: PredictionFile,
    lengths: Mapping[str, int],
    n_vertices: int,
    split: str,
    conditions: tuple[str, ...],
    allow_short: bool = False,
) -> FileCheck:
    """The first problem with one prediction file, and notes (reads the whole file: NaNs anywhere).

    ``lengths``: frames of each clip of the split; ``conditions``: the dataset's training speakers,
    the only valid ``_condition_<name>`` values.
    """
    if pf.clip not in lengths:
        return FileCheck(f"{UNKNOWN_CLIP} '{pf.clip}' (not in split '{split}')")
    if pf.condition is not None and pf.condition not in conditions:
        shown = ", ".join(conditions[:8]) + (", ..." if len(conditions) > 8 else "")
        return FileCheck(
            f"unknown condition '{pf.condition}': not a training speaker of the dataset "
            f"(expected {prediction_file(pf.clip, '<Subject>')} with Subject one of: {shown or 'none'})"
        )
    try:
        arr = read_prediction(pf.path)
    except DataError as exc:
        return FileCheck(str(exc))
    if not (arr.ndim == 2 and arr.shape[1] == n_vertices * 3) and not (
        arr.ndim == 3 and arr.shape[1:] == (n_vertices, 3)
    ):
        return FileCheck(f"shape {arr.shape}: expected (T, {n_vertices * 3}) or (T, {n_vertices}, 3)")
    if arr.shape[0] == 0:
        return FileCheck("has no frames")
    if not np.issubdtype(arr.dtype, np.floating):
        return FileCheck(f"dtype {arr.dtype}: expected floating-point vertex positions")
    bad = ~np.isfinite(np.asarray(arr).reshape(arr.shape[0], -1)).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        return FileCheck(
            f"contains NaN or inf in {int(bad.sum())} of {arr.shape[0]} frames (first at frame {first})"
        )
    n, want = int(arr.shape[0]), int(lengths[pf.clip])
    if n < MIN_LENGTH_SHARE * want and not allow_short:
        return FileCheck(
            f"has {n} frames, less than half of its clip's {want} "
            "(pass --allow-short to score it on its first frames anyway)"
        )
    if abs(n - want) > FRAME_TOLERANCE:
        return FileCheck(notes=[f"has {n} frames, its clip {want}: scored on the first {min(n, want)}"])
    return FileCheck()


class _ClipsByName(Mapping):
    """Clips of a split view by name, loaded on access (memory-mapped by the dataset)."""

    def __init__(self, view):
        self.view = view
        self.index = {ref.name: i for i, ref in enumerate(view.refs)}
        self.lengths = {ref.name: int(ref.n_frames) for ref in view.refs}

    def __getitem__(self, name):
        return self.view[self.index[name]]

    def __contains__(self, name) -> bool:
        return name in self.index

    def __iter__(self):
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


def check_bootstrap(n_boot: int, seed: int, n_clips: int | None = None) -> None:
    """--n-boot and --seed are usable; with ``n_clips``, the resampling weights fit in memory (the
    same check as ``bench run``'s eval.n_boot, in talkbench.memory_budget)."""
    from talkbench.memory_budget import check_bootstrap as check

    check(n_boot, seed, n_clips, n_boot_key="--n-boot", seed_key="--seed")


def _dataset(dataset: str | None, run: str | None, data_root: Path | None, tracking_uri: str | None):
    """(the dataset to score against, the split of ``run`` or None): a run's logged dataset (name,
    options, root unless --data-root moves it), else ``--dataset``."""
    from talkbench.datasets import load_dataset
    from talkbench.errors import ConfigError

    if run is None:
        if dataset is None:
            raise ConfigError("give --dataset NAME (e.g. synthtalk) or --run RUN_ID (the run's dataset)")
        return load_dataset(dataset, root=data_root), None
    from talkbench.runs import TrackedRun

    tracked = TrackedRun.open(run, tracking_uri)
    cfg = tracked.config
    if dataset is not None and dataset != cfg.dataset.name:
        raise ConfigError(
            f"--dataset {dataset}: run {tracked.run_id} was evaluated on {cfg.dataset.name} "
            "(leave --dataset out to use the run's)"
        )
    logged = cfg.dataset if data_root is None else dataclasses.replace(cfg.dataset, root=str(data_root))
    ds = logged.load()
    return ds, cfg.eval.split_for(ds.spec)


def _where_checked(ds, split: str, run: str | None) -> str:
    """What the clip names were checked against, and how to pick another."""
    root = getattr(ds, "root", None)
    where = f"split '{split}' of {ds.spec.name}" + (f" at {root}" if root is not None else "")
    source = f"run {run}'s dataset" if run else "--dataset"
    return (
        f". Clip names were checked against {where} ({source}); predictions of a run: --run RUN_ID; "
        "another copy or size of the data: --data-root DIR or --dataset NAME; another split: --split"
    )


def _fmt(v: float) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.4g}"


def eval_command(
    pred: Path | None = typer.Option(
        None,
        "--pred",
        help="Folder of predicted .npy files (<clip>[_condition_<Subject>].npy). Without it, --run's "
        "logged model re-predicts its test split (with the --set overrides) as a new eval run.",
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="synthtalk, vocaset, biwi, ... (default: the --run's dataset)."
    ),
    run: str | None = typer.Option(
        None,
        "--run",
        help="Score against this run's dataset and split (its logged config names them); without --pred, "
        "re-predict them with its model.",
    ),
    data_root: Path | None = typer.Option(None, "--data-root", help="Prepared dataset directory."),
    split: str | None = typer.Option(
        None,
        "--split",
        help="Split the predictions belong to (default: the run's, else the dataset's evaluation split).",
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="The store of --run."),
    out: Path | None = typer.Option(None, "--out", help="Write the per-sequence table to this CSV file."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the 95% CIs (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Score the valid files even if others are invalid (they are listed)."
    ),
    allow_short: bool = typer.Option(
        False,
        "--allow-short",
        help="Score predictions shorter than half their clip (on their first frames) instead of refusing.",
    ),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        help="With --run and no --pred: an inference setting KEY=VALUE (repeatable), e.g. "
        "facediffuser.sampler=ddim-50, eval.sample_seed=1 (another seed set), eval.samples=10.",
    ),
) -> None:
    """Score predicted vertex sequences against a dataset split and print the aggregate table.

    With --run and no --pred: re-predict the run's test split with its logged model (--set: other
    inference settings) as a new eval run."""
    with one_line_errors():
        if pred is None:
            return _repredict(run, overrides or [], tracking_uri, data_root)
        if overrides:
            raise DataError("--set changes how --run's model predicts: leave --pred out to re-predict")
        from talkbench.metrics import evaluate, load_alignments

        check_bootstrap(n_boot, seed)
        if not pred.is_dir():
            raise DataError(f"--pred {pred}: no such directory")
        files = prediction_files(pred)
        if not files:
            raise DataError(
                f"--pred {pred}: no .npy files (expected <clip>.npy or <clip>_condition_<Subject>.npy)"
            )
        ds, run_split = _dataset(dataset, run, data_root, tracking_uri)
        spec = ds.spec
        split = split or run_split or spec.eval_split
        view = ds.split(split)
        clips = _ClipsByName(view)

        conditions = tuple(spec.train_subjects)
        checks = [
            (pf, check_prediction(pf, clips.lengths, spec.n_vertices, split, conditions, allow_short))
            for pf in files
        ]
        bad = [(pf, c.problem) for pf, c in checks if c.problem]
        for pf, problem in bad:
            typer.secho(f"{pf.path}: {problem}", err=True, fg=typer.colors.YELLOW)
        for pf, c in checks:
            for note in c.notes:
                typer.secho(f"{pf.path}: note: {note}", err=True)
        good = [pf for pf, c in checks if not c.problem]
        if bad and not skip_invalid:
            unknown = any(problem.startswith(UNKNOWN_CLIP) for _, problem in bad)
            raise DataError(
                f"{len(bad)} of {len(files)} prediction files are invalid (listed above); "
                "fix them or pass --skip-invalid to score the others"
                + (_where_checked(ds, split, run) if unknown else "")
            )
        if not good:
            raise DataError(f"--pred {pred}: no valid prediction files")
        check_bootstrap(n_boot, seed, len({pf.clip for pf in good}))
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
                yield pf.clip, pf.condition, read_prediction(pf.path)

        ev = evaluate(stream(), spec, clips, alignments=alignments, n_boot=n_boot, seed=seed)
        if out is not None:
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                ev.per_sequence.to_csv(out, index=False)
            except OSError as exc:
                raise DataError(f"--out {out}: cannot write the per-sequence table ({exc})") from None
        _print(ev, spec.name, split, len(good))


def _repredict(run: str | None, overrides: list[str], tracking_uri: str | None, data_root: Path | None):
    from talkbench.errors import ConfigError
    from talkbench.reevaluate import reevaluate

    if run is None:
        raise ConfigError("give --pred FOLDER (predictions to score) or --run RUN_ID (its model re-predicts)")
    result = reevaluate(run, overrides, tracking_uri, data_root)
    typer.echo(f"run {result.run_id} ({result.experiment}): eval of run {result.of_run}")
    shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()) if "ci_" not in k)
    typer.echo(f"test: {shown}")


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
