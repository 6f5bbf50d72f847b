"""A method scored on its evaluation split and the scores logged: the part of a run after training,
shared by trained runs (pipeline) and imported checkpoints (official_import).

One explicit loop over the clips: each clip is predicted with one ``method.predict_conditions`` call
for all its speaker conditions (methods with ``uses_speaker_id``: every training speaker, or only its
own for a speaker seen in training; others: no condition). Each prediction is scored as it comes
(metrics.Evaluator keeps a per-sequence row, not the vertices), written if it is one of the saved
predictions and kept if it is a rendered sample, so memory stays at one clip's predictions
whatever the size of the test split.

A method that samples (``Method.samples``) is asked instead for ``eval.samples`` (default 10)
samples per clip and condition, sample k seeded ``sample_seed(run seed, clip, condition, k)`` (the
run seed or ``eval.sample_seed``, another seed set): sample
0 is its prediction (LVE, MVE, FDD, the saved and rendered one), all N give MEE, CE and Diversity;
the samples, every seed and the per-frame lip spread are logged beside the predictions. A
deterministic method is predicted once (N = 1, the ``talkbench.samples`` tag), never N times.
Inference speed = seconds of animation produced (every sample counted) per second of compute.
The speed profile of talkbench.speed (one timing function for every method, a 10 s clip) is logged
beside it.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from talkbench import contract
from talkbench.contract import Tag
from talkbench.errors import TalkbenchError

log = logging.getLogger(__name__)

# save every prediction when they fit in this many bytes, else the first clip of each test subject
MAX_PREDICTION_BYTES = 200 << 20


class Prediction(NamedTuple):
    """One test prediction (of a method that samples: its N samples, ``vertices`` being sample 0)."""

    clip: str
    condition: str | None  # the training speaker's name, None for unconditioned methods
    vertices: np.ndarray | None  # (T, V, 3) float32; of a blendshape method, its weights through the rig
    weights: np.ndarray | None = None  # (T, K) float32, of a method predicting blendshapes
    samples: np.ndarray | None = None  # (N, T, V, 3) float32, of a method that samples
    seeds: tuple[int, ...] = ()  # sample k's seed (methods.base.sample_seed), of a method that samples


@dataclass
class Timing:
    compute_s: float = 0.0
    animation_s: float = 0.0

    @property
    def speed(self) -> float:
        return self.animation_s / self.compute_s if self.compute_s > 0 else math.inf


@dataclass
class Scores:
    evaluation: Any  # talkbench.metrics.Evaluation
    timing: Timing
    metrics: dict[str, float]  # as logged: test/<name>, their CIs, the speed
    n_predictions: int


def conditions_for(method, spec, subject: str) -> list[int | None]:
    """Speaker conditions to predict a clip with (see the module docstring)."""
    if not getattr(method, "uses_speaker_id", False):
        return [None]
    own = spec.speaker_index(subject)
    if own >= 0:
        return [own]
    return list(range(len(spec.train_subjects)))


def pair_seed(run_seed: int, clip: str, condition: str | None) -> int:
    """The seed of ProbTalk3D's diversity pairing of one clip (index -1: no sample has it)."""
    from talkbench.methods.base import sample_seed

    return sample_seed(run_seed, clip, condition, -1)


def predict_clip(
    method, clip, spec, timing: Timing, n_samples: int = 1, run_seed: int = 0
) -> list[Prediction]:
    """One clip under all its conditions, one ``predict_conditions`` call (a method that samples: one
    ``predict_condition_samples`` call, ``n_samples`` per condition seeded by ``sample_seeds`` of the
    run seed, the clip and the condition's name); adds its cost to ``timing`` (every sample's frames
    count as animation produced)."""
    import torch

    from talkbench.methods.base import sample_seeds

    device = method.device
    audio = torch.tensor(np.asarray(clip.audio, np.float32), device=device)  # copies (read-only maps)
    template = torch.as_tensor(np.asarray(clip.template, np.float32), device=device)
    conditions = conditions_for(method, spec, clip.subject)
    names = [None if c is None else spec.train_subjects[c] for c in conditions]
    weights = getattr(method, "target", "vertices") == "blendshapes"
    sampling = getattr(method, "samples", False)
    if sampling and weights:
        raise TalkbenchError(f"method '{method.name}': sampling blendshape weights is not supported")
    seeds = [sample_seeds(run_seed, clip.name, c, n_samples) if sampling else () for c in names]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        if sampling:
            out = method.predict_condition_samples(audio, template, conditions, seeds)
        else:
            out = method.predict_conditions(audio, template, conditions)
    sync()
    timing.compute_s += time.perf_counter() - t0
    preds = out.detach().float().cpu().numpy()
    frame = (len(spec.channels),) if weights else (spec.n_vertices, 3)
    lead = (len(conditions), n_samples) if sampling else (len(conditions),)
    if preds.shape[: len(lead)] != lead or preds.shape[len(lead) + 1 :] != frame:
        call = "predict_samples" if sampling else "predict_conditions"
        want = ", ".join(map(str, (*lead, "T", *frame)))
        raise TalkbenchError(
            f"method '{method.name}': {call}() for clip '{clip.name}' returned shape "
            f"{tuple(preds.shape)}, expected ({want})"
        )
    timing.animation_s += math.prod(preds.shape[: len(lead) + 1]) / spec.fps
    if sampling:
        return [Prediction(clip.name, c, s[0], None, s, k) for c, s, k in zip(names, preds, seeds)]
    if not weights:
        return [Prediction(clip.name, c, pred) for c, pred in zip(names, preds)]
    # weights are scored and rendered as meshes too where the dataset has a rig (decoded once, here)
    rig = spec.rig
    decode = (lambda w: None) if rig is None else (lambda w: rig.decode(w, clip.template, clip.subject))
    return [Prediction(clip.name, c, _float32(decode(w)), w) for c, w in zip(names, preds)]


def _float32(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else a.astype(np.float32)


def predict_test(method, clips: list, spec) -> tuple[list[Prediction], Timing]:
    """Every prediction of ``clips`` in one list (for callers that want them all; a run streams)."""
    method.eval()
    timing = Timing()
    return [p for clip in clips for p in predict_clip(method, clip, spec, timing)], timing


def prediction_selection(method, clips: list, spec, n_samples: int = 1) -> set[str] | None:
    """None = save all; else the first clip of each test subject (when all would be too big)."""
    n_cond = max(1, len(spec.train_subjects)) if getattr(method, "uses_speaker_id", False) else 1
    copies = 1 + n_samples if getattr(method, "samples", False) else 1  # sample 0 and the samples
    total = sum(c.n_frames for c in clips) * n_cond * copies * spec.n_vertices * 3 * 4
    if total <= MAX_PREDICTION_BYTES:
        return None
    return set(first_clip_per_subject(clips, len(clips)))


def first_clip_per_subject(clips: list, n_subjects: int) -> list[str]:
    """The first clip of each of the first ``n_subjects`` subjects (the rendered samples)."""
    chosen: dict[str, str] = {}
    for clip in clips:
        if len(chosen) < n_subjects:
            chosen.setdefault(clip.subject, clip.name)
    return list(chosen.values())


def load_alignments_for(data) -> dict | None:
    root = getattr(data, "root", None)
    if root is None or not (Path(root) / "alignments").is_dir():
        return None
    from talkbench.metrics import load_alignments

    return load_alignments(Path(root) / "alignments")


def score(
    tracker, run_id: str, cfg, method, data, rdir: Path | None = None, member: str | None = None
) -> Scores:
    """Predict ``cfg.eval.split_for(spec)``, evaluate, and log metrics, tables, tags, the saved
    predictions and (when ``rdir`` is given and the dataset has faces) the rendered samples.

    ``member``: ``data`` is that member of a mixture the run trained on, ``method`` acts on it
    (``method.member``); every key it logs is the member's (``contract.for_member``)."""
    from talkbench.metrics import Evaluator

    spec = data.spec
    test = list(data.split(cfg.eval.split_for(spec)))  # the published test split unless eval.split
    evaluator = Evaluator(
        spec, {c.name: c for c in test}, load_alignments_for(data), n_boot=cfg.eval.n_boot, seed=cfg.seed
    )
    n_samples = cfg.eval.samples_for(method)
    seed_set = cfg.eval.sample_seed_for(cfg.seed)
    saved = prediction_selection(method, test, spec, n_samples) if cfg.eval.save_predictions else set()
    renders = rdir is not None and spec.faces is not None
    wanted = set(first_clip_per_subject(test, cfg.eval.render_clips)) if renders else set()
    samples: dict[str, Prediction] = {}
    record = SampleRecord()
    timing, n = Timing(), 0
    method.eval()
    with tempfile.TemporaryDirectory(prefix="talkbench-pred-") as tmp:
        kinds = (contract.PREDICTIONS_DIR, contract.WEIGHT_PREDICTIONS_DIR, contract.SAMPLE_PREDICTIONS_DIR)
        dirs = {a: Path(tmp) / a for a in kinds}
        for folder in dirs.values():
            folder.mkdir()
        for clip in test:
            for p in predict_clip(method, clip, spec, timing, n_samples, seed_set):
                seed = pair_seed(seed_set, p.clip, p.condition)
                evaluator.add(p.clip, p.condition, p.vertices, p.weights, p.samples, seed)
                record.add(p, evaluator.lips)
                n += 1
                if saved is None or p.clip in saved:
                    name = contract.prediction_file(p.clip, p.condition)
                    for folder, array in (
                        (contract.PREDICTIONS_DIR, p.vertices),
                        (contract.WEIGHT_PREDICTIONS_DIR, p.weights),
                        (contract.SAMPLE_PREDICTIONS_DIR, p.samples),
                    ):
                        if array is not None:  # frames flattened: (T, V*3), (T, K), (N, T, V*3)
                            flat = array.shape[:2] if array.ndim == 4 else array.shape[:1]
                            np.save(dirs[folder] / name, array.reshape(*flat, -1).astype(np.float32))
                if p.clip in wanted and p.vertices is not None:
                    samples.setdefault(p.clip, p)
        evaluation = evaluator.result()
        for artifact, folder in dirs.items():
            if any(folder.iterdir()):
                tracker.log_artifact(run_id, str(folder), contract.for_member(artifact, member))
    if samples:
        _render_samples(tracker, run_id, method.name, list(samples.values()), test, spec, rdir, member)
    record.log(tracker, run_id, member)
    metrics = _log_scores(tracker, run_id, method, spec, evaluation, timing, member)
    tracker.set_tags(run_id, {Tag.SAMPLES: str(n_samples), **sample_tags(cfg, method)})
    metrics.update(log_speed(tracker, run_id, method, spec, test[0], cfg.eval.speed_clip_s, member))
    metrics.update(log_diagnostics(tracker, run_id, method, data, test, member))
    log.info("run %s: %d predictions (N = %d), %.1fx real time", run_id, n, n_samples, timing.speed)
    return Scores(evaluation, timing, metrics, n)


def sample_tags(cfg, method) -> dict[str, str]:
    """Of a method that samples: the seed set and, where its config names it, the sampler."""
    if not getattr(method, "samples", False):
        return {}
    tags = {Tag.SAMPLE_SEED: str(cfg.eval.sample_seed_for(cfg.seed))}
    sampler = getattr(cfg.method_config, "sampler_id", None)
    return {**tags, Tag.SAMPLER: sampler} if isinstance(sampler, str) else tags


@dataclass
class SampleRecord:
    """What a run of a method that samples keeps beside its metrics: every sample's seed (so any
    sample replays: ``method.predict_samples(..., [seed])``) and, per frame, the spread of the
    samples on the lips (the report's diversity plot)."""

    seeds: list[tuple] = field(default_factory=list)
    spread: list = field(default_factory=list)  # one DataFrame per prediction

    def add(self, p: Prediction, lips: np.ndarray) -> None:
        if p.samples is None:
            return
        import pandas as pd

        from talkbench.metrics.stochastic import lip_spread

        self.seeds += [(p.clip, p.condition, k, s) for k, s in enumerate(p.seeds)]
        curve = lip_spread(p.samples, lips)
        frames = np.arange(len(curve))
        row = {"clip": p.clip, "condition": p.condition, "frame": frames, "spread": curve}
        self.spread.append(pd.DataFrame(row))

    def log(self, tracker, run_id: str, member: str | None = None) -> None:
        if not self.seeds:
            return
        import pandas as pd

        seeds = pd.DataFrame(self.seeds, columns=list(contract.SAMPLE_SEED_COLUMNS))
        seed_file = contract.for_member(contract.SAMPLE_SEEDS_ARTIFACT, member)
        tracker.log_text(run_id, seeds.to_csv(index=False), seed_file)
        spread = pd.concat(self.spread).to_csv(index=False, float_format="%.6g")
        tracker.log_text(run_id, spread, contract.for_member(contract.SAMPLE_SPREAD_ARTIFACT, member))


def log_speed(
    tracker, run_id: str, method, spec, clip, clip_s: float, member: str | None = None
) -> dict[str, float]:
    """The speed profile (talkbench.speed) of ``predict`` on ``clip_s`` seconds of ``clip``'s speech,
    under the clip's first condition, logged as ``speed/*`` metrics; nothing when ``clip_s`` is 0."""
    from talkbench.speed import measure

    if clip_s <= 0:
        return {}
    condition = conditions_for(method, spec, clip.subject)[0]
    profile = measure(method, clip.audio, clip.template, spec.fps, condition, clip_s)
    metrics = {contract.for_member(k, member): v for k, v in profile.metrics().items()}
    tracker.log_metrics(run_id, metrics)
    return metrics


def log_diagnostics(tracker, run_id: str, method, data, test: list, member: str | None = None) -> dict:
    """The method's own diagnostics (``Method.diagnostics`` on the training split, if any, and ``test``):
    each as ``eval/<name>.json``, its figures (not None or NaN) as ``diagnostic/<key>``; returns those."""
    metrics: dict[str, float] = {}
    train = data.split("train") if "train" in data.spec.splits else []  # a view: clips load if used
    for d in method.diagnostics(train, test):
        artifact = contract.for_member(contract.diagnostic_artifact(d.name), member)
        tracker.log_text(run_id, json.dumps(d.content, indent=1), artifact)
        for key, value in d.metrics.items():
            if value is not None and math.isfinite(value):
                metrics[contract.for_member(contract.diagnostic_metric(key), member)] = float(value)
    if metrics:
        tracker.log_metrics(run_id, metrics)
    return metrics


def _log_scores(
    tracker, run_id: str, method, spec, evaluation, timing: Timing, member: str | None = None
) -> dict[str, float]:
    from talkbench.audio.provenance import encoder_provenance
    from talkbench.metrics.registry import metric_info

    metrics = {contract.test_metric(k): float(v) for k, v in evaluation.aggregates.items()}
    for name, (lo, hi) in evaluation.ci.items():  # beside their value in the UI's metric list
        metrics[contract.test_ci_low(name)], metrics[contract.test_ci_high(name)] = float(lo), float(hi)
    metrics[contract.SPEED_METRIC] = timing.speed
    metrics = {contract.for_member(k, member): v for k, v in metrics.items()}
    tracker.log_metrics(run_id, metrics)
    per_sequence = contract.for_member(contract.PER_SEQUENCE_ARTIFACT, member)
    tracker.log_table(run_id, evaluation.per_sequence, per_sequence)
    summary = contract.for_member(contract.SUMMARY_ARTIFACT, member)
    tracker.log_text(run_id, evaluation.to_table().to_csv(index=False), summary)
    tags: dict[str, Any] = {
        Tag.INFERENCE_SPEED: f"{timing.speed:.6g}",
        Tag.REGION_DIGEST: evaluation.region_digest,
        Tag.DATASET_DIGEST: spec.digest,
    }
    tags.update({Tag.metric_version(k): v for k, v in evaluation.metric_versions.items()})
    for name in evaluation.metrics:
        tags[Tag.scale(name)] = repr(metric_info(name).scale_for(spec.name, spec.table_scales))
    tags = {contract.for_member(k, member): v for k, v in tags.items()}
    tags.update({Tag.params(k): v for k, v in method.parameter_counts().items()})  # the whole model's
    tags.update({Tag.encoder(k): v for k, v in encoder_provenance(method).items()})
    tracker.set_tags(run_id, tags)
    return metrics


def _render_samples(
    tracker, run_id: str, method_name: str, samples: list[Prediction], test: list, spec, rdir: Path,
    member: str | None = None,
) -> None:
    """Ground truth next to the prediction of each sample clip, with the clip's audio.

    A renderer failure (no OpenGL here, say) is logged as a warning and a tag: the run itself and
    everything already logged are kept.
    """
    from talkbench.render import camera_for, render_side_by_side

    clips = {c.name: c for c in test}
    out_dir = rdir / contract.for_member(contract.RENDERS_DIR, member)
    try:
        for p in samples:
            clip = clips[p.clip]
            label = method_name if p.condition is None else f"{method_name} ({p.condition})"
            render_side_by_side(
                [("ground truth", clip.vertices), (label, p.vertices)],
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
        tracker.set_tags(run_id, {Tag.RENDER_ERROR: str(exc)[:500]})
    if out_dir.is_dir() and any(out_dir.iterdir()):
        tracker.log_artifact(run_id, out_dir, contract.for_member(contract.RENDERS_DIR, member))
