"""One run end to end: tracking check -> data -> method -> stages -> predictions -> metrics -> tracking.

The tracking store is checked (and the dataset's experiment created) before any data is loaded or
any epoch is trained, so a bad ``--tracking-uri`` fails in a second with the reason. Every run gets a
directory ``$TALKBENCH_HOME/runs/<MLflow run id>/`` with ``config.yaml``, ``run.json`` and the
engine's checkpoints; ``--resume`` reads both back and reopens the same MLflow run.

Predictions: methods with ``uses_speaker_id`` predict every test clip once per training speaker
(a clip whose speaker was seen in training only with its own condition); others once per clip.
Inference speed = seconds of animation produced per second of predict() compute.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talkbench import tracking
from talkbench.config import RunConfig
from talkbench.errors import ConfigError, TalkbenchError

log = logging.getLogger(__name__)

# save every prediction when they fit in this many bytes, else the first clip of each test subject
MAX_PREDICTION_BYTES = 200 << 20
SYNTHTALK_OPTIONS = ("preset", "seed", "style_coupling")


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    tracking_uri: str
    experiment: str
    metrics: dict[str, float]  # the logged test metrics (``test/<name>``)
    inference_speed: float  # seconds of animation per second of compute
    n_predictions: int
    evaluation: Any = None  # talkbench.metrics.Evaluation
    train: Any = None  # talkbench.engine.TrainResult
    leaderboard: Any = None  # talkbench.reports.leaderboard.Leaderboard
    extra: dict[str, Any] = field(default_factory=dict)


# -- data and method ----------------------------------------------------------------------------
def load_data(cfg: RunConfig):
    from talkbench.datasets import load_dataset

    opts: dict[str, Any] = {}
    if cfg.dataset.name == "synthtalk":
        opts = {k: getattr(cfg.dataset, k) for k in SYNTHTALK_OPTIONS}
    return load_dataset(cfg.dataset.name, root=cfg.dataset.root, **opts)


def build_method(cfg: RunConfig, spec):
    from talkbench.checkpoint import seed_everything
    from talkbench.registry import METHODS

    cls = METHODS.get(cfg.method)
    seed_everything(cfg.seed)  # weight initialisation is part of what the seed fixes
    return cls(cfg.method_config, spec)


def resolved_device(cfg: RunConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def conditions_for(method, spec, subject: str) -> list[int | None]:
    """Speaker conditions to predict a clip with (see the module docstring)."""
    if not getattr(method, "uses_speaker_id", False):
        return [None]
    own = spec.speaker_index(subject)
    if own >= 0:
        return [own]
    return list(range(len(spec.train_subjects)))


# -- rendered samples ---------------------------------------------------------------------------
def _sample_clips(test: list, n_clips: int) -> set[str]:
    """The first test clip of up to ``n_clips`` subjects: the clips rendered as samples."""
    chosen: dict[str, str] = {}
    for clip in test:
        if len(chosen) < n_clips:
            chosen.setdefault(clip.subject, clip.name)
    return set(chosen.values())


def _keep_samples(preds, names: set[str], kept: dict) -> Iterator[tuple[str, str | None, np.ndarray]]:
    """Pass predictions through, keeping the first one (first condition) of each sample clip."""
    for name, label, pred in preds:
        if name in names and name not in kept:
            kept[name] = (label, pred)
        yield name, label, pred


def _render_samples(tracker, run_id: str, method_name: str, kept: dict, test: list, spec, rdir: Path) -> None:
    """Ground truth next to the kept prediction of each sample clip, with the clip's audio.

    A renderer failure (no OpenGL here, say) is logged as a warning and a tag: the run itself and
    everything already logged are kept.
    """
    if not kept:
        return
    from talkbench.render import camera_for, render_side_by_side

    out_dir = rdir / "renders"
    try:
        for clip in (c for c in test if c.name in kept):
            condition, pred = kept[clip.name]
            label = method_name if condition is None else f"{method_name} ({condition})"
            render_side_by_side(
                [("ground truth", clip.vertices), (label, pred)],
                spec.faces,
                out_dir / f"{clip.name}.mp4",
                clip.fps,
                camera_for(spec.name),
                clip.audio,
                clip.template,
                size=384,
            )
    except TalkbenchError as exc:
        log.warning("rendering samples failed, run kept: %s", exc)
        tracker.set_tags(run_id, {"talkbench.render_error": str(exc)[:500]})
    if out_dir.is_dir() and any(out_dir.iterdir()):
        tracker.log_artifact(run_id, out_dir, "renders")


# -- predictions --------------------------------------------------------------------------------
@dataclass
class _Timing:
    compute_s: float = 0.0
    animation_s: float = 0.0
    count: int = 0

    @property
    def speed(self) -> float:
        return self.animation_s / self.compute_s if self.compute_s > 0 else math.inf


def predict_test(
    method, clips: list, spec, timing: _Timing, save_dir: Path | None, save_names: set[str] | None
) -> Iterator[tuple[str, str | None, np.ndarray]]:
    """Yield ``(clip, condition subject, (T, V, 3))`` for every test prediction, timing predict()."""
    import torch

    method.eval()
    device = method.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for clip in clips:
        audio = torch.tensor(np.asarray(clip.audio, np.float32), device=device)  # copies (read-only maps)
        template = torch.as_tensor(np.asarray(clip.template, np.float32), device=device)
        for cond in conditions_for(method, spec, clip.subject):
            sync()
            t0 = time.perf_counter()
            with torch.no_grad():
                out = method.predict(audio, template, cond)
            sync()
            timing.compute_s += time.perf_counter() - t0
            pred = out.detach().float().cpu().numpy()
            if pred.ndim != 3 or pred.shape[1:] != (spec.n_vertices, 3):
                raise TalkbenchError(
                    f"method '{method.name}': predict() for clip '{clip.name}' returned shape "
                    f"{tuple(pred.shape)}, expected (T, {spec.n_vertices}, 3)"
                )
            timing.animation_s += pred.shape[0] / spec.fps
            timing.count += 1
            label = None if cond is None else spec.train_subjects[cond]
            if save_dir is not None and (save_names is None or clip.name in save_names):
                stem = clip.name if label is None else f"{clip.name}_condition_{label}"
                np.save(save_dir / f"{stem}.npy", pred.reshape(pred.shape[0], -1).astype(np.float32))
            yield clip.name, label, pred


def prediction_selection(method, clips: list, spec) -> set[str] | None:
    """None = save all; else the first clip of each test subject (when all would be too big)."""
    n_cond = max(1, len(spec.train_subjects)) if getattr(method, "uses_speaker_id", False) else 1
    total = sum(c.n_frames for c in clips) * n_cond * spec.n_vertices * 3 * 4
    if total <= MAX_PREDICTION_BYTES:
        return None
    first: dict[str, str] = {}
    for c in clips:
        first.setdefault(c.subject, c.name)
    return set(first.values())


def load_alignments_for(data) -> dict | None:
    root = getattr(data, "root", None)
    if root is None or not (Path(root) / "alignments").is_dir():
        return None
    from talkbench.metrics import load_alignments

    return load_alignments(Path(root) / "alignments")


# -- tags ---------------------------------------------------------------------------------------
def run_tags(cfg: RunConfig, device: str) -> dict[str, Any]:
    git = tracking.git_info()
    tags: dict[str, Any] = {
        "talkbench.kind": "run",
        "talkbench.method": cfg.method,
        "talkbench.dataset": cfg.dataset.name,
        "talkbench.preset": cfg.preset,
        "talkbench.seed": cfg.seed,
        "talkbench.device": device,
        "talkbench.config_hash": cfg.config_hash(),
        "talkbench.git_commit": git["commit"],
        "talkbench.git_dirty": git["dirty"],
        "mlflow.runName": f"{cfg.method}/{cfg.preset}/seed{cfg.seed}",
    }
    tags.update({f"talkbench.version.{k}": v for k, v in tracking.package_versions().items()})
    return tags


# -- resume -------------------------------------------------------------------------------------
def resume_target(run_id: str) -> tuple[str, RunConfig, str]:
    """``(run id, saved config, tracking URI)`` for ``--resume RUN_ID`` or ``--resume last``."""
    if run_id == "last":
        run_id = tracking.last_unfinished_run()
    record = tracking.read_run_record(run_id)
    config_path = tracking.run_dir(run_id) / "config.yaml"
    if not config_path.is_file():
        raise TalkbenchError(f"--resume {run_id}: {config_path} is missing; cannot rebuild the run's config")
    return run_id, RunConfig.load(config_path), record.get("tracking_uri") or tracking.resolve_tracking_uri()


# -- the run ------------------------------------------------------------------------------------
def run(
    cfg: RunConfig,
    tracking_uri: str | None = None,
    resume: bool | str = False,
    parent_run_id: str | None = None,
    progress: bool = True,
    leaderboard: bool = True,
) -> RunResult:
    """Train, predict, evaluate and log one run; returns its ids, metrics and leaderboard.

    ``resume``: False, or the MLflow run id to continue (its run directory must exist; the engine
    continues from the last checkpoint there). ``parent_run_id`` nests the run (sweeps).
    """
    if resume is True:
        raise ConfigError("resume: pass the run id to continue (or use resume_target('last'))")
    resume_id = resume if isinstance(resume, str) else None
    # 1. the store first: unreachable servers and unwritable paths fail before anything else
    tracker = tracking.Tracker(tracking_uri)
    experiment = cfg.dataset.name
    experiment_id = tracker.ensure_experiment(experiment)
    if resume_id is not None:
        tracker.get_run(resume_id)  # clear error if the store does not know it

    # 2. data and method (bad data roots and unknown methods fail here, before a run exists)
    data = load_data(cfg)
    spec = data.spec
    method = build_method(cfg, spec)
    device = resolved_device(cfg)

    # 3. the MLflow run and its directory
    if resume_id is not None:
        run_id = resume_id
        tracker.reopen_run(run_id)
        tracker.set_tags(run_id, {"talkbench.device": device, "talkbench.resumed": "true"})
    else:
        run_id = tracker.create_run(experiment_id, tags=run_tags(cfg, device), parent_run_id=parent_run_id)
    rdir = tracking.write_run_record(
        run_id, tracking_uri=tracker.uri, experiment=experiment, method=cfg.method, finished=False
    )
    try:
        result = _run_inside(tracker, run_id, rdir, cfg, data, spec, method, resume_id is not None, progress)
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        with contextlib.suppress(Exception):
            tracker.finish_run(run_id, status)
        raise
    tracker.finish_run(run_id, "FINISHED")
    tracking.write_run_record(run_id, finished=True)
    result.experiment = experiment
    if leaderboard:
        from talkbench.reports import leaderboard as lb

        result.leaderboard = lb.build(tracker.search_runs(experiment), experiment, highlight=run_id)
    return result


def _run_inside(tracker, run_id, rdir: Path, cfg, data, spec, method, resumed: bool, progress: bool):
    from talkbench.engine import train
    from talkbench.metrics import evaluate

    logger = tracking.MlflowLogger(tracker, run_id)
    config_path = cfg.save(rdir / "config.yaml")
    if not resumed:
        tracker.log_params(run_id, cfg.flatten())
        tracker.log_artifact(run_id, config_path)
        root = getattr(data, "root", None) or cfg.dataset.root or cfg.dataset.name
        # one input per dataset: MLflow keeps a single association per (run, dataset)
        tracker.log_dataset(run_id, spec.name, root, spec.digest, context="train+test")
        git = tracking.git_info()
        if git["diff"]:
            tracker.log_text(run_id, git["diff"][: 5 << 20], "provenance/git.diff")

    # 4. training (checkpoints in the run dir; the final weights are logged by the engine)
    train_result = train(method, data, cfg, rdir, logger=logger, resume=resumed, progress=progress)

    # 5. predictions on the test split, streamed into the evaluation
    test = list(data.split("test"))
    timing = _Timing()
    with tempfile.TemporaryDirectory(prefix="talkbench-pred-") as tmp:
        save_dir = Path(tmp) if cfg.eval.save_predictions else None
        preds = predict_test(method, test, spec, timing, save_dir, prediction_selection(method, test, spec))
        samples = _sample_clips(test, cfg.eval.render_clips) if spec.faces is not None else set()
        kept: dict = {}
        evaluation = evaluate(
            _keep_samples(preds, samples, kept),
            spec,
            {c.name: c for c in test},
            alignments=load_alignments_for(data),
            n_boot=cfg.eval.n_boot,
            seed=cfg.seed,
        )
        if save_dir is not None and any(save_dir.iterdir()):
            tracker.log_artifact(run_id, save_dir, "predictions")

    _render_samples(tracker, run_id, method.name, kept, test, spec, rdir)

    # 6. metrics, tables and tags
    metrics = {f"{tracking.TEST_PREFIX}{k}": float(v) for k, v in evaluation.flat().items()}
    metrics[tracking.SPEED_METRIC] = timing.speed
    tracker.log_metrics(run_id, metrics)
    tracker.log_table(run_id, evaluation.per_sequence, "eval/per_sequence.csv")
    tracker.log_text(run_id, evaluation.to_table().to_csv(index=False), "eval/summary.csv")
    from talkbench.metrics.registry import metric_info

    tags: dict[str, Any] = {
        "talkbench.inference_speed": f"{timing.speed:.6g}",
        "talkbench.region_digest": evaluation.region_digest,
        "talkbench.dataset_digest": spec.digest,
        "talkbench.resumed_from_epoch": train_result.resumed_from if train_result.resumed_from else "",
    }
    tags.update({f"talkbench.params.{k}": v for k, v in method.parameter_counts().items()})
    tags.update({f"talkbench.metric_version.{k}": v for k, v in evaluation.metric_versions.items()})
    for name in evaluation.metrics:
        tags[f"talkbench.scale.{name}"] = repr(metric_info(name).scale_for(spec.name, spec.table_scales))
    tracker.set_tags(run_id, {k: v for k, v in tags.items() if v != ""})
    log.info("run %s: %d predictions, %.1fx real time", run_id, timing.count, timing.speed)
    return RunResult(
        run_id=run_id,
        run_dir=rdir,
        tracking_uri=tracker.uri,
        experiment=spec.name,
        metrics=metrics,
        inference_speed=timing.speed,
        n_predictions=timing.count,
        evaluation=evaluation,
        train=train_result,
    )
