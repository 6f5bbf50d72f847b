"""Sweeps: a Cartesian grid of config overrides x seeds under one parent MLflow run.

The seeds are the sweep's seed axis, given by ``--seeds`` or as ``seed`` in the grid (not both); a
sweep over seeds alone needs no grid. The other keys a top-level option owns (the dataset, its root,
the device) are one per sweep: in the grid they are an error naming that option.

Each point runs as its own `bench run` subprocess attached to the parent run, so a crash or an
out-of-memory error in one point never takes the sweep down. A point whose run identity
(``RunConfig.config_hash``) and seed already have a finished run is skipped, so a killed sweep started
again finishes only what is missing; runs logged by older versions are matched by their saved config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import pandas as pd

from talkbench import paths
from talkbench.config import RunConfig, load_config
from talkbench.contract import (
    CONFIG_ARTIFACT,
    DIAGNOSTIC_PREFIX,
    HEADLINE_METRICS,
    Tag,
    column,
    metric_column,
    param_column,
    sweep_grid_param,
)
from talkbench.errors import ConfigError, TalkbenchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GridAxis:
    key: str
    values: tuple[str, ...]


@dataclass
class SweepPoint:
    values: dict[str, str]  # grid key -> value (as given on the command line)
    seed: int
    config_hash: str
    run_id: str | None = None
    status: str = "pending"  # pending | done | skipped | failed
    log: Path | None = None

    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.values.items()]

    @property
    def label(self) -> str:
        return " ".join([*self.overrides(), f"seed={self.seed}"])


@dataclass
class Sweep:
    method: str
    dataset: str
    preset: str | None
    axes: list[GridAxis]
    seeds: list[int]
    base_overrides: list[str] = field(default_factory=list)
    data_root: str | None = None
    device: str | None = None
    points: list[SweepPoint] = field(default_factory=list)

    @property
    def sweep_hash(self) -> str:
        blob = json.dumps(
            [
                self.method,
                self.dataset,
                self.preset,
                [(a.key, a.values) for a in self.axes],
                self.seeds,
                self.base_overrides,
                self.data_root,
            ],
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


SEED_KEY = "seed"
# config keys a top-level option of `bench sweep` sets for every point: not a grid axis
OPTION_KEYS = {"dataset.name": "--dataset", "dataset.root": "--data-root", "device": "--device"}
SUMMARY_ARTIFACT = "sweep_summary.csv"  # the parent's artifact: the full table, every metric and CI bound


def parse_grid(items: Sequence[str]) -> list[GridAxis]:
    """``key=v1,v2,...`` per item (none: a sweep over seeds alone); keys are checked against the
    config schema when planning."""
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        parts = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not key.strip() or not parts:
            raise ConfigError(
                f"--grid '{item}': expected KEY=V1,V2,... (e.g. memorytalker.memory_slots=16,32)"
            )
        key = key.strip()
        if any(a.key == key for a in axes):
            raise ConfigError(f"--grid: key '{key}' given twice")
        if key in OPTION_KEYS:
            raise ConfigError(
                f"--grid '{item}': {key} is set for the whole sweep by {OPTION_KEYS[key]}; "
                f"run one sweep per value"
            )
        axes.append(GridAxis(key, parts))
    return axes


def split_seed_axis(axes: list[GridAxis], seeds: Sequence[int] | None) -> tuple[list[GridAxis], list[int]]:
    """(the grid without ``seed``, the sweep's seeds): ``seed`` in the grid is the seed axis, the same
    as ``--seeds``; both at once is an error. Neither: seed 0."""
    seed_axes = [a for a in axes if a.key == SEED_KEY]
    rest = [a for a in axes if a.key != SEED_KEY]
    if seed_axes and seeds is not None:
        raise ConfigError(
            "the seeds are given twice (--grid seed=... and --seeds): give them once, e.g. --seeds 0,1,2"
        )
    values = seed_axes[0].values if seed_axes else seeds
    try:
        out = list(dict.fromkeys(int(s) for s in values)) if values is not None else [0]
    except ValueError:
        raise ConfigError(f"--grid seed={','.join(values)}: expected integers, e.g. seed=0,1,2") from None
    return rest, out or [0]


def plan(
    method: str,
    grid: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    dataset: str | None = None,
    preset: str | None = None,
    overrides: Sequence[str] = (),
    data_root: str | None = None,
    device: str | None = None,
) -> Sweep:
    """Resolve every point's config (a grid key not in the schema fails here, before any run).
    ``seeds``: None = the grid's ``seed`` axis, else seed 0."""
    axes, seeds = split_seed_axis(parse_grid(grid), seeds)
    if any(o.partition("=")[0].strip() == SEED_KEY for o in overrides):
        raise ConfigError("--set seed=...: a sweep's seeds are --seeds (or --grid seed=...)")
    first = load_config(method, dataset, preset, overrides=list(overrides), data_root=data_root)
    sweep = Sweep(method, first.dataset.experiment, preset, axes, seeds, list(overrides), data_root, device)
    for combo in product(*(a.values for a in axes)):
        values = {a.key: v for a, v in zip(axes, combo)}
        for seed in seeds:
            cfg = load_config(
                method,
                dataset,
                preset,
                overrides=[*overrides, *(f"{k}={v}" for k, v in values.items())],
                seed=seed,
                data_root=data_root,
                device=device,
            )
            sweep.points.append(SweepPoint(values, seed, cfg.config_hash()))
    return sweep


def _child_command(sweep: Sweep, point: SweepPoint, parent_run_id: str, tracking_uri: str) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "talkbench.cli",
        "run",
        "--method",
        sweep.method,
        "--dataset",
        sweep.dataset,
        "--seed",
        str(point.seed),
        "--parent-run",
        parent_run_id,
        "--tracking-uri",
        tracking_uri,
        "--no-leaderboard",
    ]
    if sweep.preset:
        cmd += ["--preset", sweep.preset]
    if sweep.data_root:
        cmd += ["--data-root", sweep.data_root]
    if sweep.device:
        cmd += ["--device", sweep.device]
    for o in [*sweep.base_overrides, *point.overrides()]:
        cmd += ["--set", o]
    return cmd


def run(
    sweep: Sweep,
    jobs: int = 1,
    tracking_uri: str | None = None,
    log_dir: Path | None = None,
    echo: Callable[[str], None] = print,
    backend=None,
) -> pd.DataFrame:
    """Run the missing points (``jobs`` at a time as local subprocesses, or through ``backend``, e.g.
    ``sweep_ray.RayBackend``) and return the summary table of all points."""
    from talkbench.tracking import Tracker

    if jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    tracker = Tracker(tracking_uri)
    experiment_id = tracker.ensure_experiment(sweep.dataset)  # before any child: no creation races
    done = _finished_runs(tracker, sweep)
    for p in sweep.points:
        p.run_id = done.get((p.config_hash, str(p.seed)))
        p.status = "skipped" if p.run_id else "pending"
    parent = _parent_run(tracker, sweep, experiment_id)
    # the grid as params (the UI shows and compares them); keys already logged are skipped on a restart
    tracker.log_params(parent, {sweep_grid_param(a.key): ",".join(a.values) for a in sweep.axes})
    log_dir = Path(log_dir) if log_dir else paths.run_dir(parent) / "points"
    log_dir.mkdir(parents=True, exist_ok=True)
    todo = [p for p in sweep.points if p.status == "pending"]
    echo(
        f"sweep {sweep.sweep_hash}: {len(sweep.points)} points, {len(sweep.points) - len(todo)} already "
        f"finished, running {len(todo)} "
        + (f"on {type(backend).__name__}" if backend is not None else f"with {jobs} job(s)")
        + f"; parent run {parent}"
    )

    def launch(index_point: tuple[int, SweepPoint]) -> None:
        i, p = index_point
        # another process (a parallel sweep, a plain `bench run`) may have finished it meanwhile
        p.run_id = _finished_runs(tracker, sweep).get((p.config_hash, str(p.seed)))
        if p.run_id:
            p.status = "skipped"
            echo(f"  [skipped] {p.label} (finished elsewhere: {p.run_id})")
            return
        p.log = log_dir / f"point-{i:03d}-seed{p.seed}.log"
        with p.log.open("w") as fh:
            code = subprocess.call(
                _child_command(sweep, p, parent, tracker.uri), stdout=fh, stderr=subprocess.STDOUT
            )
        p.status = "done" if code == 0 else "failed"
        echo(f"  [{p.status}] {p.label}" + ("" if code == 0 else f" (exit {code}, log: {p.log})"))

    status = "FINISHED"
    try:
        pending = [(i, p) for i, p in enumerate(sweep.points) if p.status == "pending"]
        if backend is not None:
            command = lambda p: _child_command(sweep, p, parent, tracker.uri)  # noqa: E731
            backend.run(sweep, pending, command, tracker, log_dir, echo)
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(launch, pending))
    except BaseException:
        status = "KILLED"
        raise
    finally:
        finished = _finished_runs(tracker, sweep)
        for p in sweep.points:
            p.run_id = p.run_id or finished.get((p.config_hash, str(p.seed)))
        if any(p.status == "failed" for p in sweep.points):
            status = "FAILED"
        # every point's run, including those finished elsewhere (they are not children of this parent)
        tracker.set_tags(parent, point_links(sweep, experiment_id))
        table = summary(sweep, tracker)
        tracker.log_text(parent, table.to_csv(index=False), SUMMARY_ARTIFACT)
        tracker.finish_run(parent, status)
    return table


def point_links(sweep: Sweep, experiment_id: str) -> dict[str, str]:
    """The parent's links to every point's run: ``Tag.POINT_RUNS`` (ids) and a description listing
    each point with a link to its run page in the UI, reused runs marked (they are not its children,
    so the UI does not nest them under the parent)."""
    lines = [f"Sweep of {sweep.method} on {sweep.dataset}: {len(sweep.points)} points", ""]
    for p in sweep.points:
        label = p.label
        if p.run_id:
            reused = " (reused: finished earlier)" if p.status == "skipped" else ""
            lines.append(f"- {label}: [{p.run_id}](#/experiments/{experiment_id}/runs/{p.run_id}){reused}")
        else:
            lines.append(f"- {label}: {p.status}, no run")
    return {
        Tag.POINT_RUNS: json.dumps([p.run_id for p in sweep.points if p.run_id]),
        Tag.NOTE: "\n".join(lines),
    }


def _finished_runs(tracker, sweep: Sweep) -> dict[tuple[str, str], str]:
    """(config hash, seed) -> id of the newest finished run of each point of ``sweep``.

    A run's hash is its tag when the tag is one of the sweep's points; otherwise, for a run of the
    sweep's method, it is recomputed from the run's saved config, so runs logged before the run
    identity last changed (talkbench 0.1.0 hashed every field) are still recognised.
    """
    runs = tracker.search_runs(sweep.dataset)
    hash_col, seed_col, method_col = column(Tag.CONFIG_HASH), column(Tag.SEED), column(Tag.METHOD)
    if runs.empty or hash_col not in runs:
        return {}
    wanted = {p.config_hash for p in sweep.points}
    out = {}
    for _, r in runs.iloc[::-1].iterrows():  # oldest first, so the newest run of a point wins
        tag = r[hash_col]
        if tag in wanted:
            key = tag
        elif r.get(method_col) == sweep.method:
            key = _saved_config_hash(tracker, r["run_id"])
        else:
            continue
        if key is not None:
            out[(key, str(r.get(seed_col, r.get(param_column("seed")))))] = r["run_id"]
    return out


_SAVED_HASHES: dict[str, str | None] = {}  # run id -> hash of its saved config (it never changes)


def _saved_config_hash(tracker, run_id: str) -> str | None:
    """Today's config hash of a run's saved config (its run dir, else its artifact); None if unreadable."""
    if run_id not in _SAVED_HASHES:
        path = paths.run_dir(run_id) / paths.RUN_CONFIG
        try:
            if not path.is_file():
                path = tracker.download_artifacts(run_id, CONFIG_ARTIFACT)
            _SAVED_HASHES[run_id] = RunConfig.load(path).config_hash()
        except (TalkbenchError, OSError) as exc:  # not a run of ours, or its method is not installed
            log.debug("run %s: no usable saved config (%s)", run_id, exc)
            _SAVED_HASHES[run_id] = None
    return _SAVED_HASHES[run_id]


def _parent_run(tracker, sweep: Sweep, experiment_id: str) -> str:
    """Reuse this sweep's parent run when restarting it, so its children stay under one parent."""
    runs = tracker.search_runs(
        sweep.dataset,
        filter_string=f"tags.`talkbench.sweep_hash` = '{sweep.sweep_hash}'",
        finished_only=False,
    )
    if not runs.empty:
        run_id = runs.iloc[0]["run_id"]
        tracker.reopen_run(run_id)
        return run_id
    tags = {
        "talkbench.kind": "sweep",
        "talkbench.method": sweep.method,
        "talkbench.dataset": sweep.dataset,
        "talkbench.sweep_hash": sweep.sweep_hash,
        "talkbench.grid": json.dumps({a.key: list(a.values) for a in sweep.axes}),
        "talkbench.seeds": json.dumps(sweep.seeds),
    }
    name = f"sweep {sweep.method}: " + ", ".join([*(a.key for a in sweep.axes), SEED_KEY])
    return tracker.create_run(experiment_id, run_name=name, tags=tags)


def summary(sweep: Sweep, tracker) -> pd.DataFrame:
    """One row per point: grid values, seed, status, run id, its test metrics and, prefixed, its
    method's diagnostics (``diagnostic/<name>``, e.g. MemoryTalker's style retrieval)."""
    runs = tracker.search_runs(sweep.dataset)
    metrics = runs.set_index("run_id") if not runs.empty else None
    rows = []
    for p in sweep.points:
        row = {**p.values, "seed": p.seed, "status": p.status, "run_id": p.run_id or ""}
        if metrics is not None and p.run_id in metrics.index:
            for col in metrics.columns:
                if col.startswith("metrics.test/") and col.count("/") == 1:
                    row[col.removeprefix("metrics.test/")] = metrics.at[p.run_id, col]
                elif col.startswith(metric_column(DIAGNOSTIC_PREFIX)) and col.count("/") == 1:
                    row[col.removeprefix("metrics.")] = metrics.at[p.run_id, col]
        rows.append(row)
    return pd.DataFrame(rows)


def compact_summary(table: pd.DataFrame, sweep: Sweep) -> pd.DataFrame:
    """The terminal's table: each point's keys, status, run and its headline metrics as ``value
    [CI low, CI high]`` (the full table, every metric and bound, is :func:`summary`)."""
    from talkbench.contract import TEST_PREFIX, test_ci_high, test_ci_low

    keys = [a.key for a in sweep.axes]
    out = table[[*keys, "seed", "status", "run_id"]].copy()
    metrics = [m for m in HEADLINE_METRICS if m in table] or [
        c for c in table.columns if c not in out and not c.endswith(("_ci_low", "_ci_high"))
    ][:3]
    for m in metrics:
        lo = table.get(test_ci_low(m).removeprefix(TEST_PREFIX))
        hi = table.get(test_ci_high(m).removeprefix(TEST_PREFIX))
        cells = []
        for i, value in table[m].items():
            if pd.isna(value):
                cells.append("")
            elif lo is not None and hi is not None and not pd.isna(lo[i]):
                cells.append(f"{value:.4g} [{lo[i]:.4g}, {hi[i]:.4g}]")
            else:
                cells.append(f"{value:.4g}")
        out[m] = cells
    return out


def missing_points_error(sweep: Sweep) -> TalkbenchError | None:
    failed = [p for p in sweep.points if p.status == "failed"]
    if not failed:
        return None
    logs = ", ".join(str(p.log) for p in failed[:3])
    return TalkbenchError(f"{len(failed)} sweep point(s) failed; see {logs}")
