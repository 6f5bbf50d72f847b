"""evaluate(): every registered metric per sequence, set-level aggregates with the reference
pooling, bootstrap confidence intervals, and the region hash that makes the numbers reproducible.

Conditions: when each clip has exactly one prediction (audio-only methods, or BIWI-Test-A where
each clip is conditioned on its own speaker) all sequences form one pool. When clips have one
prediction per training-speaker condition (one-hot methods on unseen speakers), every metric is
computed per condition with the reference pooling, then averaged over conditions; the std, min and
max over conditions are reported as ``<metric>/cond_std|cond_min|cond_max``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from talkbench.errors import ConfigError, DataError
from talkbench.metrics import lipsync, timing
from talkbench.metrics.core import ArrayLike, as_template, as_vertices, check_finite, check_indices
from talkbench.metrics.registry import METRIC_ORDER, MetricInfo, ce_name, metric_info
from talkbench.metrics.stats import (
    StatBlock,
    bootstrap_weights,
    condition_mean,
    percentile_ci,
    reduce,
)
from talkbench.metrics.stochastic import score_samples
from talkbench.metrics.style import ratio

if TYPE_CHECKING:  # the metric layer needs no dataset code at run time
    from talkbench.datasets.clip import Clip
    from talkbench.datasets.spec import DatasetSpec

CLOSURE_FRACTION = 0.2  # bilabial_recall v1: closed = below min + 20% of the speaker's true range
MAX_OFFSET_S = 0.2  # av_offset v1: lags searched within +-0.2 s (6 frames at 30 fps, 5 at 25 fps)
# predictions within one frame of the ground truth are the protocol's rounding (the released
# int(S'/50*fps) can fall one short); more than that is reported as a length mismatch
LENGTH_TOLERANCE = 1

log = logging.getLogger(__name__)


def mouth_pair_of(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray] | None:
    """The upper/lower lip sets of the mouth-opening curve: spec.mouth_pair, else the
    ``upper_lip``/``lower_lip`` regions, else None (lip-sync metrics are then skipped)."""
    if spec.mouth_pair is not None:
        return spec.mouth_pair
    if "upper_lip" in spec.regions and "lower_lip" in spec.regions:
        return spec.regions["upper_lip"], spec.regions["lower_lip"]
    return None


def _region(spec: DatasetSpec, name: str) -> np.ndarray:
    if name not in spec.regions:
        raise DataError(
            f"dataset '{spec.name}' defines no '{name}' region "
            f"(has: {', '.join(sorted(spec.regions)) or 'none'})"
        )
    return check_indices(spec.regions[name], spec.n_vertices, name)


@dataclass(frozen=True)
class LengthMismatch:
    """A (clip, condition) whose prediction length differs from the ground truth by more than
    ``LENGTH_TOLERANCE`` frames; its metrics cover the first min(predicted, true) frames."""

    clip: str
    condition: str | None
    predicted: int
    true: int


@dataclass
class Evaluation:
    """Results of one evaluation. ``per_sequence`` has one row per (clip, condition)."""

    dataset: str
    per_sequence: pd.DataFrame
    aggregates: dict[str, float]
    ci: dict[str, tuple[float, float]]
    region_digest: str
    metric_versions: dict[str, int]
    table_scales: dict[str, float] = field(default_factory=dict)
    unit: str = "m"
    metrics: tuple[str, ...] = METRIC_ORDER
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed
    length_mismatches: list[LengthMismatch] = field(default_factory=list)

    @property
    def conditioned(self) -> bool:
        return not self.per_sequence["clip"].is_unique

    def block(self, clips: list[str] | None = None) -> StatBlock:
        """Sufficient statistics arranged (conditions, clips), for aggregation and paired tests."""
        df = self.per_sequence
        if clips is None:
            clips = list(dict.fromkeys(df["clip"]))
        subjects = df.drop_duplicates("clip").set_index("clip").loc[clips, "subject"].tolist()
        if not self.conditioned:
            rows = df.set_index("clip").loc[clips]
            cols = {c: rows[c].to_numpy(np.float64)[None, :] for c in _stat_columns(df)}
            return StatBlock(clips, subjects, [None], cols)
        conditions = sorted(df["condition"].unique())
        cols = {}
        for c in _stat_columns(df):
            table = df.pivot(index="condition", columns="clip", values=c)
            cols[c] = table.loc[conditions, clips].to_numpy(np.float64)
        return StatBlock(clips, subjects, conditions, cols)

    def to_table(self, scales: dict[str, float] | None = None) -> pd.DataFrame:
        """One row per metric: value and CI divided by the display scale, with unit and direction."""
        rows = []
        for name in self.metrics:
            info = metric_info(name)
            scale = info.scale_for(self.dataset, scales if scales is not None else self.table_scales)
            lo, hi = self.ci.get(name, (math.nan, math.nan))
            row = {
                "metric": name,
                "value": self.aggregates[name] / scale,
                "ci_lo": lo / scale,
                "ci_hi": hi / scale,
                "scale": scale,
                "unit": info.unit_for(self.unit),
                "direction": info.direction,
                "version": info.version,
            }
            if self.conditioned:
                for k in ("cond_std", "cond_min", "cond_max"):
                    row[k] = self.aggregates[f"{name}/{k}"] / scale
            rows.append(row)
        return pd.DataFrame(rows)

    def flat(self) -> dict[str, float]:
        """Aggregates plus CI bounds as one flat dict (for tracking)."""
        out = dict(self.aggregates)
        for name, (lo, hi) in self.ci.items():
            out[f"{name}/ci_lo"], out[f"{name}/ci_hi"] = lo, hi
        return out


_BASE_COLUMNS = ("clip", "subject", "sentence", "condition", "n_frames_pred", "n_frames_gt")


def _stat_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in _BASE_COLUMNS]


def _label(name: str, condition: str | None) -> str:
    return f"prediction '{name}'" + (f" (condition {condition})" if condition else "")


def _sq_norm(x: np.ndarray) -> np.ndarray:
    """(T, V, 3) -> (T, V) squared Euclidean norms, in x's dtype (3x faster than einsum here)."""
    return x[..., 0] * x[..., 0] + x[..., 1] * x[..., 1] + x[..., 2] * x[..., 2]


def _gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x[:, idx] as float64; through a 12/24-byte void view (one copy per vertex, ~3x faster)."""
    if x.flags.c_contiguous:
        rows = x.view(np.dtype((np.void, 3 * x.itemsize))).reshape(x.shape[0], x.shape[1])
        return np.take(rows, idx, axis=1).view(x.dtype).reshape(x.shape[0], len(idx), 3).astype(np.float64)
    return np.take(x, idx, axis=1).astype(np.float64)


def sequence_row(
    p: np.ndarray,
    g: np.ndarray,
    template: np.ndarray,
    lips: np.ndarray,
    upper: np.ndarray,
    mouth: tuple[np.ndarray, np.ndarray] | None,
    max_lag: int,
    label: str = "prediction",
    window: int = 0,
) -> tuple[dict, np.ndarray | None]:
    """Per-sequence metrics and sufficient statistics for one prediction (the same formulas as
    core.py, fused so every array is read once); also the predicted mouth-opening curve.

    Region terms (LVE, FDD, style) are computed in float64 after one gather of the region
    vertices. The full-mesh MVE takes differences in the input precision (float32 for float32 data,
    as the reference NumPy code does) and accumulates in float64: relative error below 1e-6.
    ``window``: the DTW band of the timing-tolerant lip metrics (metrics/timing.py), in frames.
    """
    t = min(p.shape[0], g.shape[0])
    p, g = p[:t], g[:t]
    d = g - p  # in place from here on: this is the one full-mesh pass, the hot spot of evaluation
    np.multiply(d, d, out=d)
    err = d[..., 0] + d[..., 1]
    err += d[..., 2]
    mve_t = np.sqrt(err, out=err).mean(axis=1, dtype=np.float64)
    if not np.isfinite(mve_t).all():  # a NaN anywhere reaches mve_t; name the culprit
        check_finite(p, label)
        check_finite(g, f"ground truth of {label}")
    idx = np.concatenate([lips, upper])
    nl = len(lips)
    pr, gr = _gather(p, idx), _gather(g, idx)
    tr = np.asarray(template, np.float64)[idx]
    lve_t = _sq_norm(gr[:, :nl] - pr[:, :nl]).max(axis=1)
    a_g, a_p = _sq_norm(gr - tr), _sq_norm(pr - tr)  # squared displacement-from-template norms
    f = float(a_g[:, nl:].std(axis=0).mean() - a_p[:, nl:].std(axis=0).mean())
    row = {
        "n_frames": t,
        "lve": float(lve_t.mean()),
        "mve": float(mve_t.mean()),
        "fdd": f,
        "fdd_abs": abs(f),
        "lve_sum": float(lve_t.sum()),
        "mve_sum": float(mve_t.sum()),
        "lip_sq_pred": float(a_p[:, :nl].sum()),
        "lip_sq_gt": float(a_g[:, :nl].sum()),
        "upper_sq_pred": float(a_p[:, nl:].sum()),
        "upper_sq_gt": float(a_g[:, nl:].sum()),
    }
    row["articulation_gain"] = float(ratio(row["lip_sq_pred"], row["lip_sq_gt"]))
    row["upper_face_ratio"] = float(ratio(row["upper_sq_pred"], row["upper_sq_gt"]))
    row["lve_dtw"] = timing.lve_dtw(pr[:, :nl], gr[:, :nl], window)
    row["lve_dtw_sum"] = row["lve_dtw"] * t
    curve = None
    if mouth is not None:
        curve = lipsync.mouth_opening(p, *mouth)
        gt_curve = lipsync.mouth_opening(g, *mouth)
        if len(curve) >= 2:
            row["lip_corr"] = lipsync.pearson(curve, gt_curve)
            off = lipsync.av_offset(curve, gt_curve, max_lag)
        else:
            row["lip_corr"], off = 0.0, 0
        row["av_offset"], row["av_offset_abs"] = float(off), float(abs(off))
        row["lip_open_err"] = float(np.abs(curve - gt_curve).mean())
        row["lip_open_dtw"] = timing.lip_open_dtw(curve, gt_curve, window)
        row["open_abs_sum"] = row["lip_open_err"] * t
        row["open_dtw_sum"] = row["lip_open_dtw"] * t
    return row, curve


def weight_row(p: np.ndarray, g: np.ndarray, groups: Mapping[str, np.ndarray]) -> dict:
    """Per-sequence weight-space terms: frame sums of the mean squared channel error, overall and
    per channel group, over the first min(T_pred, T_gt) frames."""
    t = min(p.shape[0], g.shape[0])
    sq = (np.asarray(g[:t], np.float64) - np.asarray(p[:t], np.float64)) ** 2
    total = float(sq.mean(axis=1).sum())
    row = {"n_frames": t, "bs_sq_sum": total, "bs_mse": total / t}
    for group, idx in groups.items():
        total = float(sq[:, idx].mean(axis=1).sum())
        row[f"bs_{group}_sum"], row[f"bs_mse_{group}"] = total, total / t
    return row


def evaluate(
    predictions: Iterable[tuple[str, str | None, ArrayLike]],
    spec: DatasetSpec,
    clips: Mapping[str, Clip],
    alignments: Mapping[str, list[dict]] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Score ``(clip_name, condition, vertices (T, V, 3))`` predictions against ``clips``.

    Any bad prediction (unknown clip, wrong vertex count, NaN/inf, duplicate) raises a DataError
    naming it; nothing is averaged over a NaN. ``alignments`` (clip -> SynthTalk segments) enables
    bilabial_recall and must cover every predicted clip.
    """
    evaluator = Evaluator(spec, clips, alignments, n_boot, seed)
    for name, condition, verts in predictions:
        evaluator.add(name, condition, verts)
    return evaluator.result()


class Evaluator:
    """:func:`evaluate` one prediction at a time: each is reduced to its per-sequence row (and
    mouth-opening curve) when added, so a caller can score a whole test split without holding it."""

    def __init__(
        self,
        spec: DatasetSpec,
        clips: Mapping[str, Clip],
        alignments: Mapping[str, list[dict]] | None = None,
        n_boot: int = 1000,
        seed: int = 0,
    ):
        if n_boot < 0:  # -5 resamples would silently give no CIs
            raise ConfigError(f"eval.n_boot {n_boot}: expected 0 (no CIs) or a positive number of resamples")
        if seed < 0:  # numpy's generator refuses it only at the bootstrap, after all the work
            raise ConfigError(f"bootstrap seed {seed}: expected a non-negative integer")
        self.spec, self.clips, self.alignments = spec, clips, alignments
        self.n_boot, self.seed = n_boot, seed
        # sorted (duplicates kept: they weigh in FDD's mean as in the reference): cache-friendly gathers
        self.lips = np.sort(_region(spec, "lips"))
        self.upper = np.sort(_region(spec, "upper_face"))
        mouth = mouth_pair_of(spec)
        if mouth is not None:
            mouth = (
                check_indices(mouth[0], spec.n_vertices, "upper_lip"),
                check_indices(mouth[1], spec.n_vertices, "lower_lip"),
            )
        self.mouth = mouth
        self.max_lag = max(1, int(round(MAX_OFFSET_S * spec.fps)))
        self.window = timing.dtw_window(spec.fps)
        self.rows: list[dict] = []
        self.seen: set[tuple[str, str | None]] = set()
        self.templates: dict[str, np.ndarray] = {}
        self.curves: dict[tuple[str, str | None], np.ndarray] = {}
        self.gt_curves: dict[str, np.ndarray] = {}
        self.kind: str | None = None  # "vertices" or "weights": what the predictions are
        self.has_vertices = False  # predicted meshes, given or through the rig
        self.groups = {
            g: idx for g, idx in getattr(spec, "channel_groups", {}).items() if g in ("lower", "upper")
        }

    def _weights(self, weights: ArrayLike, clip: Clip, label: str) -> np.ndarray:
        if clip.weights is None:
            raise DataError(f"{label}: weights, but dataset '{self.spec.name}' has none to compare")
        if hasattr(weights, "detach"):
            weights = weights.detach().cpu().numpy()
        w = np.asarray(weights)
        k = len(self.spec.channels)
        if w.ndim != 2 or w.shape[1] != k or w.shape[0] == 0:
            raise DataError(f"{label}: weights of shape {w.shape}; expected (T, {k}) for '{self.spec.name}'")
        check_finite(w[:, :, None], label)
        return w

    def add(
        self,
        name: str,
        condition: str | None,
        verts: ArrayLike | None,
        weights: ArrayLike | None = None,
        samples: ArrayLike | None = None,
        pair_seed: int = 0,
    ) -> None:
        """Score one prediction: vertices (T, V, 3), or blendshape weights (T, K) (scored channel by
        channel, and as meshes through the dataset's rig when it has one).

        ``samples`` (N, T, V, 3), of a method that samples, adds the stochastic columns (MEE, CE,
        both diversities; ``verts`` is its sample 0, which LVE, MVE and FDD score); ``pair_seed``
        seeds ProbTalk3D's diversity pairing of this clip."""
        spec, label = self.spec, _label(name, condition)
        if name not in self.clips:
            raise DataError(f"{label}: no clip of that name in the ground truth of '{spec.name}'")
        if (name, condition) in self.seen:
            raise DataError(f"{label}: given twice")
        self.seen.add((name, condition))
        if verts is None and weights is None:
            raise DataError(f"{label}: no prediction (neither vertices nor weights)")
        kind = "weights" if weights is not None else "vertices"
        if self.kind not in (None, kind):
            raise DataError(f"{label}: {kind}, but the predictions before it were {self.kind}")
        self.kind = kind
        clip = self.clips[name]
        row: dict = {}
        if weights is not None:
            w = self._weights(weights, clip, label)
            row = weight_row(w, clip.weights, self.groups)
            if verts is None and spec.rig is not None:
                verts = spec.rig.decode(w, clip.template, clip.subject)
        if verts is None:  # weights without a rig: weight-space metrics only
            self.rows.append({
                "clip": name, "subject": clip.subject, "sentence": clip.sentence, "condition": condition,
                "n_frames_pred": len(w), "n_frames_gt": clip.n_frames, **row,
            })
            return
        self.has_vertices = True
        p = as_vertices(verts, label, exact=False)
        if p.shape[1] != spec.n_vertices:
            raise DataError(
                f"{label}: has {p.shape[1]} vertices, expected {spec.n_vertices} for '{spec.name}'"
            )
        g = as_vertices(clip.vertices, f"ground truth of clip '{name}'", exact=False)
        if g.shape[1] != spec.n_vertices:
            raise DataError(
                f"ground truth of clip '{name}' has {g.shape[1]} vertices, expected {spec.n_vertices}"
            )
        if name not in self.templates:
            self.templates[name] = as_template(clip.template, spec.n_vertices)
        vertex_row, curve = sequence_row(
            p, g, self.templates[name], self.lips, self.upper, self.mouth, self.max_lag, label, self.window
        )
        if samples is not None:
            scores = score_samples(samples, g, self.lips, pair_seed)
            row.update(
                mee_sum=scores.mee_sum, ce_sum=scores.ce_sum, div_pt3d=scores.div_pt3d,
                div_all=scores.div_all, n_samples=scores.n_samples, ce_index=scores.ce_index,
            )  # fmt: skip
        self.rows.append({
            "clip": name, "subject": clip.subject, "sentence": clip.sentence, "condition": condition,
            "n_frames_pred": p.shape[0], "n_frames_gt": clip.n_frames, **row, **vertex_row,
        })
        if curve is not None:
            self.curves[(name, condition)] = curve
            if name not in self.gt_curves:
                self.gt_curves[name] = lipsync.mouth_opening(clip.vertices, *self.mouth)

    def result(self) -> Evaluation:
        spec, rows, mouth, alignments = self.spec, self.rows, self.mouth, self.alignments
        if not rows:
            raise DataError(f"no predictions to evaluate for '{spec.name}'")
        mismatches = _length_mismatches(rows, spec.name)

        df = pd.DataFrame(rows)
        _check_conditions(df)  # before the segment columns, whose curves are keyed by (clip, condition)
        skipped: dict[str, str] = {}
        if not self.has_vertices:
            for m in METRIC_ORDER:
                if metric_info(m).target == "vertices":
                    skipped[m] = f"blendshape predictions and dataset '{spec.name}' has no rig to make meshes"
        elif mouth is None:
            for m in ("lip_corr", "av_offset", "av_offset_abs", "lip_open_err", "lip_open_dtw"):
                skipped[m] = f"dataset '{spec.name}' defines no mouth_pair or upper_lip/lower_lip regions"
        if not self.has_vertices:
            pass
        elif alignments is None or mouth is None:
            for m in ("bilabial_recall", "vowel_open_rate"):
                skipped[m] = "no phoneme alignments given" if alignments is None else skipped["lip_corr"]
        else:
            _segment_columns(df, self.curves, self.gt_curves, alignments, spec.fps)

        for m in METRIC_ORDER:
            info = metric_info(m)
            if info.target != "blendshapes" or m in skipped:
                continue
            if self.kind != "weights":
                if spec.target == "blendshapes":
                    skipped[m] = "the method predicts vertices, not blendshape weights"
                else:
                    skipped[m] = ""  # a vertex dataset: not a metric of it
            elif info.requires and info.requires.removesuffix("_channels") not in self.groups:
                group = info.requires.removesuffix("_channels")
                skipped[m] = f"dataset '{spec.name}' has no '{group}' channel group"
        metrics = tuple(m for m in METRIC_ORDER if m not in skipped) + _sample_metrics(df, skipped)
        skipped = {m: why for m, why in skipped.items() if why}
        ev = Evaluation(
            dataset=spec.name, per_sequence=df, aggregates={}, ci={}, region_digest=spec.region_digest(),
            metric_versions={m: metric_info(m).version for m in metrics},
            table_scales=dict(spec.table_scales), unit=spec.unit, metrics=metrics, skipped=skipped,
            length_mismatches=mismatches,
        )
        _aggregate(ev, self.n_boot, self.seed)
        return ev


def _sample_metrics(df: pd.DataFrame, skipped: dict[str, str]) -> tuple[str, ...]:
    """MEE, CE of N, the diversities: where the predictions carried samples (all of them, one N)."""
    if "n_samples" not in df.columns:
        return ()
    counts = df["n_samples"]
    if counts.isna().any():
        raise DataError("samples were given for some predictions only; give them for all or none")
    ns = sorted(set(counts.astype(int)))
    if len(ns) > 1:
        raise DataError(f"predictions have different sample counts {ns}; MEE and CE need one N")
    n = ns[0]
    out = ["mee", ce_name(n), "diversity"]
    if n % 2 and n > 1:
        skipped["diversity_pt3d"] = f"it pairs the samples in halves: N must be even (10 published), got {n}"
    else:
        out.append("diversity_pt3d")
    return tuple(out)


def _length_mismatches(rows: list[dict], dataset: str) -> list[LengthMismatch]:
    """The rows whose predicted and true frame counts differ by more than LENGTH_TOLERANCE, with
    one warning that names them (the metrics still truncate to the shorter length)."""
    out = [
        LengthMismatch(r["clip"], r["condition"], int(r["n_frames_pred"]), int(r["n_frames_gt"]))
        for r in rows
        if abs(int(r["n_frames_pred"]) - int(r["n_frames_gt"])) > LENGTH_TOLERANCE
    ]
    if out:
        shown = ", ".join(
            f"{_label(m.clip, m.condition)} ({m.predicted} vs {m.true})" for m in out[:5]
        )
        more = f" and {len(out) - 5} more" if len(out) > 5 else ""
        log.warning(
            "%s: %d of %d predictions differ from the ground truth by more than %d frame(s) "
            "(predicted vs true): %s%s; metrics use the shorter length",
            dataset, len(out), len(rows), LENGTH_TOLERANCE, shown, more,
        )
    return out


def _segment_columns(df, curves, gt_curves, alignments, fps: float) -> None:
    """n_bilabial / n_closed and n_vowel / n_vowel_open per row, with the closure threshold from
    each speaker's true opening range."""
    missing = sorted(set(df["clip"]) - set(alignments))
    if missing:
        raise DataError(
            f"no phoneme alignment for {len(missing)} predicted clip(s): {', '.join(missing[:5])}"
        )
    subj_of = dict(zip(df["clip"], df["subject"]))
    thresholds = {}
    for subject in set(subj_of.values()):
        c = np.concatenate([gt_curves[n] for n, s in subj_of.items() if s == subject])
        thresholds[subject] = lipsync.closure_threshold(float(c.min()), float(c.max()), CLOSURE_FRACTION)
    counts = []
    for name, cond, subject in zip(df["clip"], df["condition"], df["subject"]):
        segments = lipsync.validate_segments(list(alignments[name]), f"alignment of clip '{name}'")
        cond = None if pd.isna(cond) else cond  # pandas holds a missing condition as NaN
        curve, th = curves[(name, cond)], thresholds[subject]
        closed = lipsync.bilabial_closures(curve, segments, fps, th)
        counts.append(closed + lipsync.vowel_openings(curve, segments, fps, th))
    c = np.asarray(counts, np.float64).reshape(-1, 4)
    df["n_bilabial"], df["n_closed"], df["n_vowel"], df["n_vowel_open"] = c.T
    with np.errstate(divide="ignore", invalid="ignore"):
        df["bilabial_recall"] = df["n_closed"] / df["n_bilabial"]
        df["vowel_open_rate"] = df["n_vowel_open"] / df["n_vowel"]


def _check_conditions(df: pd.DataFrame) -> None:
    """One prediction per clip, or one per (condition, clip) with every condition covering the
    same clips: otherwise the mean over conditions would compare different test sets."""
    if df["clip"].is_unique:
        return
    if df["condition"].isna().any():
        raise DataError(
            "some clips have several predictions but some predictions have no condition; "
            "give each prediction of a clip a distinct condition"
        )
    want = set(df["clip"])
    for cond, sub in df.groupby("condition"):
        lacking = sorted(want - set(sub["clip"]))
        if lacking:
            raise DataError(
                f"condition {cond} has no prediction for {len(lacking)} clip(s) the other conditions "
                f"cover: {', '.join(lacking[:5])}"
            )


def _aggregate(ev: Evaluation, n_boot: int, seed: int) -> None:
    block = ev.block()
    n = len(block.clips)
    ones = np.ones((1, n))
    w = bootstrap_weights(n, n_boot, seed) if n_boot > 0 else None
    for name in ev.metrics:
        info: MetricInfo = metric_info(name)
        per_cond = reduce(info, block, ones)[0]  # (C,)
        ev.aggregates[name] = float(per_cond.mean())
        if ev.conditioned:
            ev.aggregates[f"{name}/cond_std"] = float(per_cond.std())
            ev.aggregates[f"{name}/cond_min"] = float(per_cond.min())
            ev.aggregates[f"{name}/cond_max"] = float(per_cond.max())
        if w is not None:
            ev.ci[name] = percentile_ci(condition_mean(reduce(info, block, w)))
    # per-speaker style ratios (mean over conditions), the numbers behind the log errors
    onehot = block.speaker_onehot()
    speakers = sorted(set(block.subjects))
    for key, (pcol, gcol) in {
        "articulation_gain": ("lip_sq_pred", "lip_sq_gt"),
        "upper_face_ratio": ("upper_sq_pred", "upper_sq_gt"),
    }.items():
        if pcol not in block.columns:  # weights without a rig: no meshes
            continue
        r = ratio(block.columns[pcol] @ onehot, block.columns[gcol] @ onehot).mean(axis=0)
        for s, v in zip(speakers, r):
            ev.aggregates[f"{key}/{s}"] = float(v)
